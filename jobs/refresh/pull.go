package refresh

import (
	"context"
	"fmt"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"
)

// puller pulls a tag into the store through containers/image, enforcing
// the signature policy. The tag moves to the new image; the old image stays
// (without that name) until prune removes it once unused.
type puller struct {
	store storage.Store
	sys   *types.SystemContext
	pc    *signature.PolicyContext
}

func newPuller(store storage.Store, sys *types.SystemContext) (*puller, error) {
	pol, err := signature.DefaultPolicy(sys)
	if err != nil {
		return nil, fmt.Errorf("reading the signature policy: %w", err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	return &puller{store: store, sys: sys, pc: pc}, nil
}

func (p *puller) Close() { _ = p.pc.Destroy() }

// pull copies named into the store and returns the new image's ID and
// manifest digest. A non-nil auth is used instead of containers/image's own
// credential lookup, which runs credential helpers without a context.
func (p *puller) pull(ctx context.Context, named reference.NamedTagged, img LocalImage, auth *types.DockerAuthConfig) (string, string, error) {
	src, err := docker.NewReference(named)
	if err != nil {
		return "", "", fmt.Errorf("source %s: %w", named, err)
	}
	dst, err := istorage.Transport.NewStoreReference(p.store, named, "")
	if err != nil {
		return "", "", fmt.Errorf("destination %s: %w", named, err)
	}
	sys := *p.sys
	// Pull the same platform as the image being refreshed.
	sys.OSChoice, sys.ArchitectureChoice, sys.VariantChoice = img.OS, img.Architecture, img.Variant
	if auth != nil {
		sys.DockerAuthConfig = auth
	}
	man, err := copy.Image(ctx, p.pc, dst, src, &copy.Options{SourceCtx: &sys, DestinationCtx: &sys})
	if err != nil {
		return "", "", fmt.Errorf("pulling %s: %w", named, err)
	}
	d, err := manifest.Digest(man)
	if err != nil {
		return "", "", fmt.Errorf("pulled %s: %w", named, err)
	}
	newImg, err := p.store.Image(named.String())
	if err != nil {
		return "", d.String(), fmt.Errorf("pulled %s: %w", named, err)
	}
	return newImg.ID, d.String(), nil
}
