package verify_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// harness runs the stowage binary against a podman store with a signing HOME.
type harness struct {
	p        *testenv.Podman
	home     *testenv.SigningHome
	toml     string // stowage policy
	stateDir string
}

func newHarness(t *testing.T, driver, stowagePolicy string) *harness {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman", "skopeo", "gpg")
	h := &harness{p: testenv.NewPodman(t, driver), home: testenv.NewSigningHome(t), stateDir: t.TempDir()}
	h.p.Env = append(h.p.Env, h.home.Env()...)
	h.toml = filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(h.toml, []byte("version = 1\n"+stowagePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// verify runs `stowage run verify --format json ARGS` and decodes the report.
func (h *harness) verify(t *testing.T, args ...string) verify.Report {
	t.Helper()
	argv := append(h.p.Flags(), "--policy", h.toml, "--state-dir", h.stateDir, "run", "verify", "--format", "json")
	out := testenv.Run(t, h.p.Env, testenv.Stowage(t), append(argv, args...)...)
	var rep verify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, out)
	}
	if rep.Job != report.JobVerify || rep.Summary == "" {
		t.Fatalf("bad envelope: %+v", rep.Common)
	}
	return rep
}

func byRef(rep verify.Report) map[string]verify.Result {
	m := map[string]verify.Result{}
	for _, r := range rep.Results {
		m[r.Reference] = r
	}
	return m
}

func eventRefs(rep verify.Report, kind string) []string {
	var out []string
	for _, e := range rep.Events {
		if e.Kind == kind {
			ref := e.Reference
			if ref == "" {
				ref = e.Image
			}
			out = append(out, ref)
		}
	}
	sort.Strings(out)
	return out
}

type want struct {
	status  verify.Status
	reason  string // substring
	changed bool
}

func checkResults(t *testing.T, rep verify.Report, wants map[string]want) {
	t.Helper()
	got := byRef(rep)
	if len(got) != len(wants) {
		t.Errorf("%d results, want %d: %+v", len(got), len(wants), rep.Results)
	}
	for ref, w := range wants {
		r, ok := got[ref]
		switch {
		case !ok:
			t.Errorf("%s: no result", ref)
		case r.Status != w.status || !strings.Contains(r.Reason, w.reason) || r.Changed != w.changed:
			t.Errorf("%s: got %s %q changed=%v, want %s ~%q changed=%v", ref, r.Status, r.Reason, r.Changed, w.status, w.reason, w.changed)
		}
	}
}

func sameStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// TestTrustChanges signs images with real GPG (skopeo, lookaside) and
// sigstore (registry attachments) keys, pulls them under a policy that
// requires the signatures, then changes the world and checks each name is
// classified correctly, with changes reported once and recoveries reported.
func TestTrustChanges(t *testing.T) {
	h := newHarness(t, "vfs", "")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	R := reg.Addr
	h.home.WriteRegistriesD(t, R+"/sig")
	keyA := testenv.NewGPGKey(t, "stwg-verify A <a@verify.test>")
	keyB := testenv.NewGPGKey(t, "stwg-verify B <b@verify.test>")
	sk := testenv.NewSigstoreKey(t)

	src := testenv.NewPodman(t, "vfs")
	for i := 1; i <= 5; i++ {
		src.Import(t, fmt.Sprintf("localhost/src%d:1", i), map[string]string{"id": fmt.Sprint(i)})
	}
	s := func(i int) string { return storeRef(src, fmt.Sprintf("localhost/src%d:1", i)) }
	pushGPG(t, h.home, keyA, s(1), R+"/gpg/app:1")
	pushGPG(t, h.home, keyA, s(2), R+"/gpg/rot:1")
	pushGPG(t, h.home, keyA, s(3), R+"/gpg/other:1")
	pushUnsigned(t, h.home, s(3), R+"/open/other:1") // same manifest, unsigned
	pushSigstore(t, h.home, sk, s(4), R+"/sig/app:1")
	pushUnsigned(t, h.home, s(5), R+"/open/tight:1")

	policy1 := testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{
		R + "/gpg":  {testenv.SignedBy(keyA.PublicKey)},
		R + "/keyb": {testenv.SignedBy(keyB.PublicKey)},
		R + "/sig":  {testenv.SigstoreSigned(sk.PublicKey)},
		R + "/open": {testenv.InsecureAcceptAnything()},
	}}
	policy1.Write(t, h.home.PolicyPath)
	for _, n := range []string{"gpg/app:1", "gpg/rot:1", "gpg/other:1", "open/tight:1"} {
		h.p.Run(t, "pull", "-q", "--tls-verify=false", R+"/"+n)
	}
	pullVerified(t, h.p, h.home, R+"/sig/app:1")
	// The policy really was enforced at pull time.
	if _, err := testenv.RunErr(h.p.Env, "podman", append(h.p.Flags(), "pull", "-q", "--tls-verify=false", R+"/keyb/nothing:1")...); err == nil {
		t.Fatal("podman pulled an image the policy rejects")
	}

	rep := h.verify(t)
	checkResults(t, rep, map[string]want{
		R + "/gpg/app:1":    {verify.StatusAccepted, "signedBy", false},
		R + "/gpg/rot:1":    {verify.StatusAccepted, "signedBy", false},
		R + "/gpg/other:1":  {verify.StatusAccepted, "signedBy", false},
		R + "/sig/app:1":    {verify.StatusAccepted, "sigstoreSigned", false},
		R + "/open/tight:1": {verify.StatusAccepted, "insecureAcceptAnything", false},
	})
	if len(rep.Events) != 0 {
		t.Errorf("first clean run reported events: %+v", rep.Events)
	}
	if rep.Metrics["accepted"] != 5 || rep.Metrics["insecure"] != 1 || rep.Metrics["rejected"] != 0 {
		t.Errorf("metrics = %v", rep.Metrics)
	}

	// Change the world.
	policy2 := testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{
		R + "/gpg":        {testenv.SignedBy(keyA.PublicKey)},
		R + "/gpg/rot":    {testenv.SignedBy(keyB.PublicKey)}, // key rotation
		R + "/keyb":       {testenv.SignedBy(keyB.PublicKey)},
		R + "/sig":        {testenv.SigstoreSigned(sk.PublicKey)},
		R + "/open":       {testenv.InsecureAcceptAnything()},
		R + "/open/tight": {testenv.Reject()}, // tightened
	}}
	policy2.Write(t, h.home.PolicyPath)
	h.p.Run(t, "pull", "-q", "--tls-verify=false", R+"/open/other:1") // unsigned re-pull wipes gpg/other's signatures
	h.p.Run(t, "tag", R+"/gpg/app:1", R+"/keyb/app:1")                // a scope that needs key B

	wants2 := map[string]want{
		R + "/gpg/app:1":    {verify.StatusAccepted, "signedBy", false},
		R + "/gpg/rot:1":    {verify.StatusRejected, "signature", true},
		R + "/gpg/other:1":  {verify.StatusUnsigned, "no signature exists", true},
		R + "/open/other:1": {verify.StatusAccepted, "insecureAcceptAnything", false},
		R + "/keyb/app:1":   {verify.StatusRejected, "signature", true},
		R + "/sig/app:1":    {verify.StatusAccepted, "sigstoreSigned", false},
		R + "/open/tight:1": {verify.StatusRejected, "rejected by policy", true},
	}
	rejected := []string{R + "/gpg/rot:1", R + "/gpg/other:1", R + "/keyb/app:1", R + "/open/tight:1"}

	// A dry run reports but remembers nothing.
	rep = h.verify(t, "--dry-run")
	checkResults(t, rep, wants2)
	sameStrings(t, "dry-run rejected events", eventRefs(rep, report.EventSignatureRejected), rejected)

	rep = h.verify(t)
	checkResults(t, rep, wants2)
	sameStrings(t, "rejected events", eventRefs(rep, report.EventSignatureRejected), rejected)
	if r := byRef(rep)[R+"/open/tight:1"]; r.Rule != verify.RuleReject {
		t.Errorf("tightened rule reported as %q", r.Rule)
	}
	if rep.Metrics["rejected"] != 3 || rep.Metrics["unsigned"] != 1 {
		t.Errorf("metrics = %v", rep.Metrics)
	}

	// Reported once.
	rep = h.verify(t)
	for ref, w := range wants2 {
		w.changed = false
		wants2[ref] = w
	}
	checkResults(t, rep, wants2)
	if len(rep.Events) != 0 {
		t.Errorf("second run repeated events: %+v", rep.Events)
	}

	// Back to the old policy: rotation and tightening undone → recovered.
	policy1.Write(t, h.home.PolicyPath)
	rep = h.verify(t)
	sameStrings(t, "recovered events", eventRefs(rep, report.EventSignatureRecovered), []string{R + "/gpg/rot:1", R + "/open/tight:1"})
	if got := eventRefs(rep, report.EventSignatureRejected); len(got) != 0 {
		t.Errorf("still-failing names reported again: %q", got)
	}
	if r := byRef(rep)[R+"/gpg/other:1"]; r.Status != verify.StatusUnsigned || r.Changed {
		t.Errorf("gpg/other after restore: %+v", r)
	}
}
