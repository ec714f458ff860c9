package refresh

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/types"
	storagetypes "go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/policy"

	"github.com/stowage/stowage/jobs/shared/pins"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/test/testenv"
)

// TestPullOnly: `stowage run refresh --pull REF` checks that reference
// alone and pulls it although its mode is notify; the other drifted
// reference is neither checked nor pulled; a pinned or unknown reference is
// refused.
func TestPullOnly(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	a, b := w.reg.Addr+"/app/a:1", w.reg.Addr+"/app/b:1"
	w.push("app/a:1")
	w.push("app/b:1")
	w.pull(a)
	w.pull(b)
	aID := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", a)
	bID := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", b)
	w.push("app/a:1")
	db2 := w.push("app/b:1")

	base := registryLog(t, w.reg)
	rep, err := runPullOnly(w, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Reference != b || rep.Results[0].Status != StatusDrifted {
		t.Fatalf("results %+v, want b alone, drifted", rep.Results)
	}
	if h := registryLog(t, w.reg)["HEAD"] - base["HEAD"]; h != 1 {
		t.Errorf("%d HEAD requests, want 1 (b only)", h)
	}
	rb := rep.Results[0]
	if rb.PulledImageID == "" || rb.PulledImageID == bID {
		t.Fatalf("b not pulled: %+v", rb)
	}
	pulled := false
	for _, e := range rep.Events {
		pulled = pulled || e.Kind == report.EventImagePulled && e.Reference == b && e.Digest == db2
	}
	if !pulled {
		t.Errorf("no image_pulled event for b: %+v", rep.Events)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", b); got != rb.PulledImageID {
		t.Errorf("b points to %s, want %s", got, rb.PulledImageID)
	}
	w.host.Run(t, "image", "inspect", bID) // the old image is kept
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", a); got != aID {
		t.Errorf("a was pulled too: %s, want %s", got, aID)
	}

	if _, err := pins.Add(w.db, a, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := runPullOnly(w, a); err == nil || !strings.Contains(err.Error(), "pinned") {
		t.Errorf("pinned reference: %v, want a refusal", err)
	}
	if _, err := runPullOnly(w, w.reg.Addr+"/app/none:1"); err == nil || !strings.Contains(err.Error(), "no local image") {
		t.Errorf("unknown reference: %v", err)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", a); got != aID {
		t.Errorf("a pinned reference was pulled: %s", got)
	}

	// A newer version of c (notify mode, no pull_newer rule) is pulled
	// beside it; c itself stays.
	c := w.reg.Addr + "/app/c:1.25"
	w.push("app/c:1.25")
	w.pull(c)
	cID := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", c)
	w.push("app/c:1.26")
	p := defaultRefresh()
	p.Newer = policy.NewerMinor
	rep, err = runPullOnly(w, c, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Newer) != 1 || rep.Newer[0].Newer != "1.26" || rep.Newer[0].PulledImageID == "" {
		t.Fatalf("newer of c: %+v", rep.Newer)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", w.reg.Addr+"/app/c:1.26"); got != rep.Newer[0].PulledImageID {
		t.Errorf("c:1.26 is %s, want the pulled %s", got, rep.Newer[0].PulledImageID)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", c); got != cID {
		t.Errorf("c:1.25 moved to %s", got)
	}
}

// runPullOnly is one run with PullOnly ref, returning its error.
func runPullOnly(w *world, ref string, p ...policy.Refresh) (*Report, error) {
	w.t.Helper()
	sys := &types.SystemContext{SystemRegistriesConfPath: w.regConf, AuthFilePath: filepath.Join(w.t.TempDir(), "auth.json")}
	st, err := storeopen.Open(storagetypes.StoreOptions{GraphRoot: w.host.Root, RunRoot: w.host.RunRoot, GraphDriverName: w.host.Driver})
	if err != nil {
		w.t.Fatal(err)
	}
	defer storeopen.Close(st)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pol := defaultRefresh()
	if len(p) > 0 {
		pol = p[0]
	}
	return Run(ctx, quiet(), st, w.db, Options{Policy: pol, Sys: sys, PullOnly: ref})
}
