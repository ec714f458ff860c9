package verify_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// verifyFailing runs `stowage run verify --format json ARGS`, which must
// exit non-zero, and decodes the report it still prints.
func (h *harness) verifyFailing(t *testing.T, args ...string) (verify.Report, error) {
	t.Helper()
	argv := append(h.p.Flags(), "--policy", h.toml, "--state-dir", h.stateDir, "run", "verify", "--format", "json")
	out, err := testenv.RunErr(h.p.Env, testenv.Stowage(t), append(argv, args...)...)
	var rep verify.Report
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("decoding report: %v (exit: %v)\n%s", jerr, err, out)
	}
	return rep, err
}

// TestBrokenTrustConfigRemovesNothing is the regression test for issue 12
// item 1: validly GPG-signed images, pulled by real podman under a policy
// that requires the signatures, must not be removed (nor untagged) when a
// key file the policy names breaks. Before the fix an empty key file gave
// `rejected … No public keys imported` and a missing one, for an image
// with two signatures, `None of the signatures were accepted, reasons:
// open …`, and both images were deleted.
func TestBrokenTrustConfigRemovesNothing(t *testing.T) {
	h := newHarness(t, "vfs", "")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	R := reg.Addr
	h.home.WriteRegistriesD(t)
	keyA := testenv.NewGPGKey(t, "stwg-trustcfg A <a@trustcfg.test>")
	keyB := testenv.NewGPGKey(t, "stwg-trustcfg B <b@trustcfg.test>")

	src := testenv.NewPodman(t, "vfs")
	src.Import(t, "localhost/one:1", map[string]string{"id": "1"})
	src.Import(t, "localhost/two:1", map[string]string{"id": "2"})
	pushGPG(t, h.home, keyA, storeRef(src, "localhost/one:1"), R+"/one/app:1")
	pushGPG(t, h.home, keyA, storeRef(src, "localhost/two:1"), R+"/tmp/two:1")
	// two: signed by A (under another identity) and by B.
	env := append(h.home.Env(), keyB.Env()...)
	testenv.Run(t, env, "skopeo", "copy", "-q", "--policy", insecurePolicy(t), "--src-tls-verify=false", "--dest-tls-verify=false",
		"--sign-by", keyB.Fingerprint, "docker://"+R+"/tmp/two:1", "docker://"+R+"/two/app:1")

	// The policy names copies of the public keys, which the test breaks.
	keys := t.TempDir()
	keyOne, keyTwo := filepath.Join(keys, "one.asc"), filepath.Join(keys, "two.asc")
	copyFile(t, keyA.PublicKey, keyOne)
	copyFile(t, keyB.PublicKey, keyTwo)
	testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{
		R + "/one": {testenv.SignedBy(keyOne)},
		R + "/two": {testenv.SignedBy(keyTwo)},
		R + "/tmp": {testenv.InsecureAcceptAnything()},
	}}.Write(t, h.home.PolicyPath)
	for _, n := range []string{"one/app:1", "two/app:1"} {
		h.p.Run(t, "pull", "-q", "--tls-verify=false", R+"/"+n)
	}
	rep := h.verify(t, "--mode", "remove", "--dry-run")
	checkResults(t, rep, map[string]want{
		R + "/one/app:1": {verify.StatusAccepted, "signedBy", false},
		R + "/two/app:1": {verify.StatusAccepted, "signedBy", false},
	})

	// Key file of one emptied, key file of two deleted.
	if err := os.WriteFile(keyOne, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(keyTwo); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"remove", "untag"} {
		rep, err := h.verifyFailing(t, "--mode", mode)
		if err == nil {
			t.Errorf("%s: a broken trust configuration exited 0", mode)
		}
		for _, n := range []string{"one/app:1", "two/app:1"} {
			r := byRef(rep)[R+"/"+n]
			if r.Status != verify.StatusError || !r.TrustConfig {
				t.Errorf("%s: %s: got %s %q, want a trust configuration error", mode, n, r.Status, r.Reason)
			}
		}
		for _, a := range rep.Actions {
			if a.Applied {
				t.Errorf("%s: applied %+v", mode, a)
			}
		}
		joined := strings.Join(rep.TrustConfigErrors, "\n")
		for _, f := range []string{keyOne, keyTwo} {
			if !strings.Contains(joined, f) {
				t.Errorf("%s: trust_config_errors do not name %s: %q", mode, f, rep.TrustConfigErrors)
			}
		}
		for _, n := range []string{"one/app:1", "two/app:1"} {
			if _, err := testenv.RunErr(h.p.Env, "podman", append(h.p.Flags(), "image", "exists", R+"/"+n)...); err != nil {
				t.Errorf("%s: %s was removed or untagged: %v", mode, n, err)
			}
		}
	}

	// Repaired: judged again, accepted, and the run succeeds.
	copyFile(t, keyA.PublicKey, keyOne)
	copyFile(t, keyB.PublicKey, keyTwo)
	rep = h.verify(t, "--mode", "remove")
	if len(rep.TrustConfigErrors) != 0 || rep.Metrics["accepted"] != 2 {
		t.Errorf("after repair: %v %v", rep.TrustConfigErrors, rep.Metrics)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(fmt.Errorf("writing %s: %w", to, err))
	}
}
