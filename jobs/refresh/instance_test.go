package refresh

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
)

func TestDigestChooseInstance(t *testing.T) {
	dg := func(s string) digest.Digest { return digest.FromString(s) }
	plat := func(os, arch, variant string) *imgspecv1.Platform {
		return &imgspecv1.Platform{OS: os, Architecture: arch, Variant: variant}
	}
	att := func(name string, p *imgspecv1.Platform, ref digest.Digest) imgspecv1.Descriptor {
		return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: dg(name), Size: 500, Platform: p,
			Annotations: map[string]string{refTypeAnnotation: attestationManifest, "vnd.docker.reference.digest": ref.String()}}
	}
	img := func(name string, p *imgspecv1.Platform) imgspecv1.Descriptor {
		return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: dg(name), Size: 700, Platform: p}
	}
	index := func(ds ...imgspecv1.Descriptor) []byte {
		b, err := json.Marshal(imgspecv1.Index{Versioned: struct {
			SchemaVersion int `json:"schemaVersion"`
		}{2}, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: ds})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	amd := LocalImage{OS: "linux", Architecture: "amd64"}
	arm := LocalImage{OS: "linux", Architecture: "arm64", Variant: "v8"}
	tests := []struct {
		name  string
		body  []byte
		img   LocalImage
		want  string // "" = not found
		media string
	}{
		{"buildx: images then attestations", index(
			img("amd", plat("linux", "amd64", "")), img("arm", plat("linux", "arm64", "v8")),
			att("att-amd", plat("unknown", "unknown", ""), dg("amd")), att("att-arm", plat("unknown", "unknown", ""), dg("arm"))),
			amd, dg("amd").String(), ""},
		{"arm64 picks its image", index(
			att("att-amd", plat("unknown", "unknown", ""), dg("amd")), img("amd", plat("linux", "amd64", "")), img("arm", plat("linux", "arm64", "v8"))),
			arm, dg("arm").String(), ""},
		{"platform gone, a platform-less attestation left: not found", index(
			img("arm", plat("linux", "arm64", "v8")), att("att", nil, dg("arm"))),
			amd, "", ""},
		{"platform gone, an unknown/unknown entry without annotation: not found", index(
			img("arm", plat("linux", "arm64", "v8")), img("odd", plat("unknown", "unknown", ""))),
			amd, "", ""},
		{"an attestation claiming our platform is never chosen", index(
			att("att", plat("linux", "amd64", ""), dg("amd")), img("amd", plat("linux", "amd64", ""))),
			amd, dg("amd").String(), ""},
		{"only attestations", index(att("a", plat("unknown", "unknown", ""), dg("x"))), amd, "", ""},
		{"a platform-less image entry still matches, as in containers/image", index(img("any", nil)), amd, dg("any").String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			media := tt.media
			if media == "" {
				media = imgspecv1.MediaTypeImageIndex
			}
			got, found, err := chooseInstance(tt.body, media, tt.img)
			if err != nil {
				t.Fatal(err)
			}
			if found != (tt.want != "") || got != tt.want {
				t.Errorf("chooseInstance = %q found %t, want %q", got, found, tt.want)
			}
		})
	}

	// Docker manifest lists: unknown/unknown entries are skipped too.
	list := manifest.Schema2ListFromComponents([]manifest.Schema2ManifestDescriptor{
		{Schema2Descriptor: manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2MediaType, Digest: dg("u"), Size: 1}, Platform: manifest.Schema2PlatformSpec{OS: "unknown", Architecture: "unknown"}},
		{Schema2Descriptor: manifest.Schema2Descriptor{MediaType: manifest.DockerV2Schema2MediaType, Digest: dg("amd"), Size: 1}, Platform: manifest.Schema2PlatformSpec{OS: "linux", Architecture: "amd64"}},
	})
	body, err := list.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	if got, found, err := chooseInstance(body, manifest.DockerV2ListMediaType, amd); err != nil || !found || got != dg("amd").String() {
		t.Errorf("docker list: %q %t %v", got, found, err)
	}
	if _, found, err := chooseInstance(body, manifest.DockerV2ListMediaType, arm); err != nil || found {
		t.Errorf("docker list without arm64: found %t, %v", found, err)
	}

	// Not a list, or not JSON: an error, never a panic.
	if _, _, err := chooseInstance(body, manifest.DockerV2Schema2MediaType, amd); err == nil || !strings.Contains(err.Error(), "not a manifest list") {
		t.Errorf("single manifest type: %v", err)
	}
	if _, _, err := chooseInstance([]byte("{"), imgspecv1.MediaTypeImageIndex, amd); err == nil {
		t.Error("truncated index: no error")
	}
}

// FuzzDigestChooseInstance: any registry answer for a list is an entry, no
// entry, or an error; never a panic.
func FuzzDigestChooseInstance(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}`), true)
	f.Add([]byte(`{"manifests":[{"platform":{"os":"unknown","architecture":"unknown"},"annotations":{"vnd.docker.reference.type":"attestation-manifest"}}]}`), true)
	f.Add([]byte(`{"manifests":null}`), false)
	f.Fuzz(func(t *testing.T, body []byte, oci bool) {
		mt := manifest.DockerV2ListMediaType
		if oci {
			mt = imgspecv1.MediaTypeImageIndex
		}
		d, found, err := chooseInstance(body, mt, LocalImage{OS: "linux", Architecture: "amd64"})
		if err != nil {
			return
		}
		if found != (d != "") || (found && validDigest(d) != nil) {
			t.Fatalf("found %t with digest %q", found, d)
		}
	})
}
