package verify_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/signature"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"
	stypes "go.podman.io/storage/types"

	"github.com/stowage/stowage/test/testenv"
)

// pushSigstore copies the image src (a containers-storage reference) to
// docker://dst signed with a sigstore key, the signature stored as an
// attachment in the registry. Debian's skopeo 1.9.3 has sigstore signing
// patched out ("Debian-local change: sigstore disabled"), so this uses
// containers/image's copy.Image with SignBySigstorePrivateKeyFile: the same
// code skopeo runs upstream.
func pushSigstore(t *testing.T, home *testenv.SigningHome, key *testenv.SigstoreKey, src, dst string) {
	t.Helper()
	srcRef, err := storageTransport.Transport.ParseReference(strings.TrimPrefix(src, "containers-storage:"))
	if err != nil {
		t.Fatal(err)
	}
	copyToRegistry(t, home, srcRef, dst, copy.Options{
		SignBySigstorePrivateKeyFile:     key.PrivateKey,
		SignSigstorePrivateKeyPassphrase: key.Passphrase,
	})
}

// copyToRegistry copies srcRef to docker://dst with containers/image,
// accepting any source signature, with home's registries.d (so sigstore
// signatures become attachments) and TLS verification off for the
// plain-HTTP test registry. opts adds signing options.
func copyToRegistry(t *testing.T, home *testenv.SigningHome, srcRef types.ImageReference, dst string, opts copy.Options) {
	t.Helper()
	dstRef, err := docker.ParseReference("//" + dst)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := signature.NewPolicyFromBytes([]byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	sys := &types.SystemContext{RegistriesDirPath: home.RegistriesD, DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	opts.SourceCtx, opts.DestinationCtx = sys, sys
	if _, err := copy.Image(context.Background(), pc, dstRef, srcRef, &opts); err != nil {
		t.Fatalf("copy %s → %s: %v", transports.ImageName(srcRef), dst, err)
	}
}

// pushGPG copies src to docker://dst with `skopeo copy --sign-by`, the
// signature written to the lookaside directory.
func pushGPG(t *testing.T, home *testenv.SigningHome, key *testenv.GPGKey, src, dst string) {
	t.Helper()
	env := append(home.Env(), key.Env()...)
	testenv.Run(t, env, "skopeo", "copy", "-q", "--policy", insecurePolicy(t), "--dest-tls-verify=false",
		"--sign-by", key.Fingerprint, src, "docker://"+dst)
}

// pushUnsigned copies src to docker://dst without signing.
func pushUnsigned(t *testing.T, home *testenv.SigningHome, src, dst string) {
	t.Helper()
	testenv.Run(t, home.Env(), "skopeo", "copy", "-q", "--policy", insecurePolicy(t), "--dest-tls-verify=false",
		"--remove-signatures", src, "docker://"+dst)
}

func insecurePolicy(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("%s/insecure-policy.json", t.TempDir())
	testenv.TrustPolicy{Default: []testenv.Requirement{testenv.InsecureAcceptAnything()}}.Write(t, p)
	return p
}

// storeRef names an image of p's store for skopeo/containers-image.
func storeRef(p *testenv.Podman, name string) string {
	return fmt.Sprintf("containers-storage:[%s@%s+%s]%s", p.Driver, p.Root, p.RunRoot, name)
}

// pullVerified copies docker://name into p's store under the trust policy
// of home, as `podman pull` does. Used for sigstore-signed images: Debian's
// podman 4.3.1 rejects every sigstore signature ("Debian-local change:
// sigstore disabled"); this is containers/image's own pull path with the
// same policy evaluation podman performs upstream.
func pullVerified(t *testing.T, p *testenv.Podman, home *testenv.SigningHome, name string) {
	t.Helper()
	srcRef, err := docker.ParseReference("//" + name)
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.GetStore(stypes.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = st.Shutdown(false) }()
	dstRef, err := storageTransport.Transport.NewStoreReference(st, srcRef.DockerReference(), "")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := signature.NewPolicyFromFile(home.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	sys := &types.SystemContext{RegistriesDirPath: home.RegistriesD, DockerInsecureSkipTLSVerify: types.OptionalBoolTrue}
	_, err = copy.Image(context.Background(), pc, dstRef, srcRef, &copy.Options{SourceCtx: sys, DestinationCtx: sys})
	if err != nil {
		t.Fatalf("pull %s: %v", name, err)
	}
}
