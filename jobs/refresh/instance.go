package refresh

import (
	"fmt"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"
)

const (
	// refTypeAnnotation marks buildx's attestation manifests (provenance,
	// SBOM) in an OCI index, with the value attestationManifest.
	refTypeAnnotation   = "vnd.docker.reference.type"
	attestationManifest = "attestation-manifest"
	unknownPlatform     = "unknown"
)

// chooseInstance returns the digest of the manifest list or OCI index
// entry an image of img's platform was pulled from (unknown fields: this
// host's, as containers/image fills them in). Entries that are not images
// are never chosen: attestation manifests (annotated
// vnd.docker.reference.type=attestation-manifest, or with an unknown OS or
// architecture, as buildx writes them). containers/image would fall back
// to an OCI entry without a platform when no platform matches, which may
// be such an attestation. found is false when the list has no entry for
// the platform; err is a list that cannot be parsed or names an invalid
// digest for it.
func chooseInstance(body []byte, mediaType string, img LocalImage) (digest string, found bool, err error) {
	var list manifest.List
	switch manifest.NormalizedMIMEType(mediaType) {
	case imgspecv1.MediaTypeImageIndex:
		idx, err := manifest.OCI1IndexFromManifest(body)
		if err != nil {
			return "", false, err
		}
		var keep []imgspecv1.Descriptor
		for _, d := range idx.Manifests {
			if d.Annotations[refTypeAnnotation] == attestationManifest {
				continue
			}
			if p := d.Platform; p != nil && (p.OS == unknownPlatform || p.Architecture == unknownPlatform) {
				continue
			}
			keep = append(keep, d)
		}
		list = manifest.OCI1IndexFromComponents(keep, nil)
	case manifest.DockerV2ListMediaType:
		l, err := manifest.Schema2ListFromManifest(body)
		if err != nil {
			return "", false, err
		}
		var keep []manifest.Schema2ManifestDescriptor
		for _, d := range l.Manifests {
			if d.Platform.OS == unknownPlatform || d.Platform.Architecture == unknownPlatform {
				continue
			}
			keep = append(keep, d)
		}
		list = manifest.Schema2ListFromComponents(keep)
	default:
		return "", false, fmt.Errorf("%q is not a manifest list media type", mediaType)
	}
	d, err := list.ChooseInstance(&types.SystemContext{OSChoice: img.OS, ArchitectureChoice: img.Architecture, VariantChoice: img.Variant})
	if err != nil {
		return "", false, nil // no entry for the platform
	}
	// A list's entries come from the registry too.
	if err := validDigest(d.String()); err != nil {
		return "", false, fmt.Errorf("entry for %s/%s: %w", img.OS, img.Architecture, err)
	}
	return d.String(), true, nil
}
