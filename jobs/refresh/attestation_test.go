package refresh

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stowage/stowage/test/testenv"
)

// ociIndexer builds OCI indexes the way `docker buildx build --attest`
// pushes them: image manifests per platform plus attestation manifests
// (in-toto layers, platform unknown/unknown, annotated with the image they
// describe), written to the registry through its HTTP API.
type ociIndexer struct {
	t    *testing.T
	reg  *testenv.Registry
	repo string
}

// image pushes a local image to the repository as an OCI manifest and
// returns its descriptor for platform p.
func (x ociIndexer) image(w *world, local string, p *imgspecv1.Platform) imgspecv1.Descriptor {
	x.t.Helper()
	tag := strings.TrimSuffix(strings.TrimPrefix(local, "localhost/"), ":latest")
	d := w.pushImage(local, x.reg.Addr+"/"+x.repo+":"+tag, "--format", "oci")
	body, mt := x.reg.GetManifest(x.t, x.repo, d)
	if mt != imgspecv1.MediaTypeImageManifest {
		x.t.Fatalf("pushed %s as %s, want an OCI manifest", local, mt)
	}
	return imgspecv1.Descriptor{MediaType: mt, Digest: digest.Digest(d), Size: int64(len(body)), Platform: p}
}

// attestation pushes a provenance attestation for subject; platform nil
// leaves the platform out (as some tools do).
func (x ociIndexer) attestation(subject imgspecv1.Descriptor, build int, p *imgspecv1.Platform) imgspecv1.Descriptor {
	x.t.Helper()
	stmt := fmt.Sprintf(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2",`+
		`"subject":[{"name":"app","digest":{"sha256":%q}}],"predicate":{"buildNumber":%d}}`, subject.Digest.Encoded(), build)
	layer := x.reg.PutBlob(x.t, x.repo, []byte(stmt))
	cfg := []byte(fmt.Sprintf(`{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[%q]}}`, layer))
	cfgDigest := x.reg.PutBlob(x.t, x.repo, cfg)
	m, err := json.Marshal(imgspecv1.Manifest{
		Versioned: versioned2, MediaType: imgspecv1.MediaTypeImageManifest,
		Config: imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageConfig, Digest: digest.Digest(cfgDigest), Size: int64(len(cfg))},
		Layers: []imgspecv1.Descriptor{{MediaType: "application/vnd.in-toto+json", Digest: digest.Digest(layer), Size: int64(len(stmt)),
			Annotations: map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"}}},
	})
	if err != nil {
		x.t.Fatal(err)
	}
	d := digest.FromBytes(m)
	if got := x.reg.PutManifest(x.t, x.repo, d.String(), imgspecv1.MediaTypeImageManifest, m); got != d.String() {
		x.t.Fatalf("attestation stored as %s, want %s", got, d)
	}
	return imgspecv1.Descriptor{MediaType: imgspecv1.MediaTypeImageManifest, Digest: d, Size: int64(len(m)), Platform: p,
		Annotations: map[string]string{refTypeAnnotation: attestationManifest, "vnd.docker.reference.digest": subject.Digest.String()}}
}

// index pushes an OCI index of ds under tag and returns its digest.
func (x ociIndexer) index(tag string, ds ...imgspecv1.Descriptor) string {
	x.t.Helper()
	b, err := json.Marshal(imgspecv1.Index{Versioned: versioned2, MediaType: imgspecv1.MediaTypeImageIndex, Manifests: ds})
	if err != nil {
		x.t.Fatal(err)
	}
	return x.reg.PutManifest(x.t, x.repo, tag, imgspecv1.MediaTypeImageIndex, b)
}

var versioned2 = struct {
	SchemaVersion int `json:"schemaVersion"`
}{2}

// TestRefreshMultiarchAttestation: a tag that is an OCI index with
// attestation manifests (buildx provenance/SBOM) is compared by the local
// platform's image; attestations are never taken for it, even when they
// carry no platform and our platform has left the index. A registry that
// leaves Docker-Content-Digest out gets one GET, hashed, and a note.
func TestRefreshMultiarchAttestation(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	x := ociIndexer{t: t, reg: w.reg, repo: "att/app"}
	linuxAmd := &imgspecv1.Platform{OS: "linux", Architecture: "amd64"}
	linuxArm := &imgspecv1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	unknown := &imgspecv1.Platform{OS: "unknown", Architecture: "unknown"}
	amd1 := x.image(w, w.image("amd1"), linuxAmd)
	arm1 := x.image(w, w.image("arm1"), linuxArm)
	ref := w.reg.Addr + "/att/app:1"

	idx1 := x.index("1", amd1, arm1, x.attestation(amd1, 1, unknown), x.attestation(arm1, 1, unknown))
	w.pull(ref, "--arch", "amd64")
	rep := w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if rep.GetRequests != 0 {
		t.Errorf("unchanged index: %d GETs", rep.GetRequests)
	}

	// A rebuild with new provenance only: the index digest moves, our
	// image does not.
	idx2 := x.index("1", amd1, arm1, x.attestation(amd1, 2, unknown), x.attestation(arm1, 2, unknown))
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if r := byRef(rep)[ref]; idx2 == idx1 || r.ListDigest != idx2 || r.RemoteDigest != amd1.Digest.String() || rep.GetRequests != 1 {
		t.Errorf("new attestations: %+v, %d GETs; want current at %s in %s, 1 GET", r, rep.GetRequests, amd1.Digest, idx2)
	}

	// Our platform leaves the index; a platform-less attestation (which
	// containers/image's ChooseInstance would fall back to) is left: the
	// drift is to the index, never to the attestation.
	att := x.attestation(arm1, 3, nil)
	idx3 := x.index("1", att, arm1)
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusDrifted})
	if r := byRef(rep)[ref]; r.RemoteDigest != idx3 || r.RemoteDigest == att.Digest.String() {
		t.Errorf("platform gone: remote digest %s, want the index %s (attestation %s)", r.RemoteDigest, idx3, att.Digest)
	}

	// Our platform's image changes: drift to the new image.
	amd2 := x.image(w, w.image("amd2"), linuxAmd)
	x.index("1", x.attestation(amd2, 4, unknown), amd2, arm1)
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusDrifted})
	if r := byRef(rep)[ref]; r.RemoteDigest != amd2.Digest.String() {
		t.Errorf("our image changed: remote digest %s, want %s", r.RemoteDigest, amd2.Digest)
	}

	// The same index through a registry that sends no
	// Docker-Content-Digest: one GET (the index), hashed; the note says so.
	x.index("1", amd1, arm1, x.attestation(amd1, 5, unknown))
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr))
	viaProxy := proxy.Addr + "/att/app:1"
	w.host.Run(t, "tag", ref, viaProxy)
	proxy.SetFaults(testenv.Fault{Match: "/manifests/", StripDigest: true})
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{viaProxy: StatusCurrent, ref: StatusCurrent})
	r := byRef(rep)[viaProxy]
	if r.Note != noteDigestFromGet || r.RemoteDigest != amd1.Digest.String() || rep.Registries[proxy.Addr].Get != 1 {
		t.Errorf("no Docker-Content-Digest: %+v, counters %+v; want current with a note and 1 GET", r, rep.Registries[proxy.Addr])
	}
	if n := len(proxy.Requests("/manifests/")); n != 2 {
		t.Errorf("the proxy saw %d manifest requests, want HEAD + GET", n)
	}
	if byRef(rep)[ref].Note != "" {
		t.Errorf("a registry that sends the digest got a note: %+v", byRef(rep)[ref])
	}
	for _, q := range proxy.Requests("/manifests/") {
		if q.Method != http.MethodHead && q.Method != http.MethodGet {
			t.Errorf("unexpected request %s", q)
		}
	}
}
