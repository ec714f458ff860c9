package verify_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/manifest"

	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// pushDirWithSignatures copies the dir: image at dir, with the signatures
// stored beside it, to docker://dst; with sigstore attachments enabled for
// dst in home's registries.d, sigstore signatures become attachments.
// containers/image's copy, since Debian's skopeo has sigstore disabled.
func pushDirWithSignatures(t *testing.T, home *testenv.SigningHome, dir, dst string) {
	t.Helper()
	srcRef, err := directory.NewReference(dir)
	if err != nil {
		t.Fatal(err)
	}
	copyToRegistry(t, home, srcRef, dst, copy.Options{})
}

// pushFulcioSigned exports src (a containers-storage reference) to a dir:
// image with skopeo, signs its manifest for dst with a Fulcio leaf and a
// Rekor SET integrated at integratedTime, and pushes image and signature
// attachment to the registry.
func pushFulcioSigned(t *testing.T, home *testenv.SigningHome, leaf *testenv.FulcioLeaf, rekor *testenv.RekorKey, integratedTime time.Time, src, dst string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "image")
	testenv.Run(t, home.Env(), "skopeo", "copy", "-q", "--policy", insecurePolicy(t), src, "dir:"+dir)
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := manifest.Digest(m)
	if err != nil {
		t.Fatal(err)
	}
	testenv.SignFulcio(t, leaf, rekor, d, dst, integratedTime).WriteToDir(t, dir, 1)
	pushDirWithSignatures(t, home, dir, dst)
}

// TestFulcioRekor signs an image keyless-style — a leaf certificate of a
// Fulcio-like CA made in the test, with a Rekor SET from a Rekor key made in
// the test — stores the signature as a sigstore attachment in a real
// registry, pulls it under a policy requiring that CA, issuer, email and
// Rekor key, and checks that verify accepts it offline and rejects it, with
// containers/image's reason, when any of those trust anchors changes. The
// leaf has long expired by then, as real Fulcio certificates do: only the
// SET's integration time must fall in its validity, and a second image whose
// SET postdates the certificate is rejected.
func TestFulcioRekor(t *testing.T) {
	h := newHarness(t, "vfs", "")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	R := reg.Addr
	h.home.WriteRegistriesD(t, R+"/fulcio", R+"/late")

	const (
		email  = "builder@stwg-fulcio.test"
		issuer = "https://oidc.stwg-fulcio.test"
	)
	ca := testenv.NewFulcioCA(t, "stwg-fulcio")
	otherCA := testenv.NewFulcioCA(t, "stwg-fulcio-other")
	rekor := testenv.NewRekorKey(t)
	otherRekor := testenv.NewRekorKey(t)
	notBefore := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	leaf := ca.Issue(t, email, issuer, notBefore)
	if time.Now().Before(leaf.Cert.NotAfter) {
		t.Fatalf("leaf still valid until %s; the test needs an expired one", leaf.Cert.NotAfter)
	}

	src := testenv.NewPodman(t, "vfs")
	src.Import(t, "localhost/fsrc1:1", map[string]string{"id": "fulcio-1"})
	src.Import(t, "localhost/fsrc2:1", map[string]string{"id": "fulcio-2"})
	pushFulcioSigned(t, h.home, leaf, rekor, notBefore.Add(time.Minute),
		storeRef(src, "localhost/fsrc1:1"), R+"/fulcio/app:1")
	pushFulcioSigned(t, h.home, leaf, rekor, leaf.Cert.NotAfter.Add(time.Hour),
		storeRef(src, "localhost/fsrc2:1"), R+"/late/app:1")

	good := testenv.FulcioSigned(ca.CAPath, issuer, email, rekor.PublicKeyPath)
	trust := func(fulcio, late testenv.Requirement) testenv.TrustPolicy {
		return testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{
			R + "/fulcio": {fulcio},
			R + "/late":   {late},
		}}
	}
	// The late-logged image can only be pulled with its scope open.
	trust(good, testenv.InsecureAcceptAnything()).Write(t, h.home.PolicyPath)
	pullVerified(t, h.p, h.home, R+"/fulcio/app:1")
	pullVerified(t, h.p, h.home, R+"/late/app:1")

	trust(good, good).Write(t, h.home.PolicyPath)
	rep := h.verify(t)
	checkResults(t, rep, map[string]want{
		R + "/fulcio/app:1": {verify.StatusAccepted, "sigstoreSigned", false},
		R + "/late/app:1":   {verify.StatusRejected, "certificate has expired or is not yet valid", true},
	})

	cases := []struct {
		name   string
		req    testenv.Requirement
		reason string
	}{
		{"other email", testenv.FulcioSigned(ca.CAPath, issuer, "intruder@stwg-fulcio.test", rekor.PublicKeyPath),
			`Required email "intruder@stwg-fulcio.test" not found`},
		{"other issuer", testenv.FulcioSigned(ca.CAPath, "https://oidc.other.test", email, rekor.PublicKeyPath),
			`Unexpected Fulcio OIDC issuer "` + issuer + `"`},
		{"other rekor key", testenv.FulcioSigned(ca.CAPath, issuer, email, otherRekor.PublicKeyPath),
			"cryptographic signature verification of Rekor SET failed"},
		{"other CA", testenv.FulcioSigned(otherCA.CAPath, issuer, email, rekor.PublicKeyPath),
			"certificate signed by unknown authority"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			trust(c.req, good).Write(t, h.home.PolicyPath)
			// Dry runs: each case is compared with the accepted first run.
			rep := h.verify(t, "--dry-run")
			checkResults(t, rep, map[string]want{
				R + "/fulcio/app:1": {verify.StatusRejected, c.reason, true},
				R + "/late/app:1":   {verify.StatusRejected, "certificate has expired or is not yet valid", false},
			})
		})
	}

	// The trusted anchors again: accepted, nothing to report.
	trust(good, good).Write(t, h.home.PolicyPath)
	rep = h.verify(t)
	if r := byRef(rep)[R+"/fulcio/app:1"]; r.Status != verify.StatusAccepted || r.Changed {
		t.Errorf("restored policy: %+v", r)
	}
}
