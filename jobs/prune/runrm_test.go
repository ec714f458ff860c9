package prune_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/state"
)

// TestRunRmUseOrdersLRU: a real `podman run --rm` of the oldest-pulled image
// leaves no container, only podman events; `stowage run prune` reads them
// through a real `podman system service`, records the use, and under quota
// pressure removes the least recently used image instead of the one just run.
func TestRunRmUseOrdersLRU(t *testing.T) {
	e := newEnv(t, "vfs")
	p := e.p
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, p.ImportRunnable(t, fmt.Sprintf("localhost/runrm%d:1", i), map[string]string{"/marker": fmt.Sprint(i)}))
		time.Sleep(20 * time.Millisecond) // distinct pull times, oldest first
	}
	svc := p.StartPodmanService(t)
	before := time.Now()
	if out := p.Run(t, "run", "--rm", "localhost/runrm0:1", "/bin/sh", "-c", "echo ran"); out != "ran" {
		t.Fatalf("podman run output %q", out)
	}
	if ps := p.Run(t, "ps", "-aq"); ps != "" {
		t.Fatalf("run --rm left containers: %s", ps)
	}

	// The scan's clock is a whole second after the run, and that second
	// has passed when the prune asks for the events, as when collecting a
	// big store takes a while: podman 4 stops reading its event log once a
	// requested "until" has passed, which must not lose the use.
	now := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(now.Add(1200 * time.Millisecond)))
	nowFlag := "--now=" + now.UTC().Format(time.RFC3339)

	e.writePolicy(t, `min_age = "0"
keep_last = 0`)
	base := e.prune(t, "--dry-run", nowFlag, "--podman-socket", svc.Socket)
	db, err := state.Open(e.state)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lastuse.Load(db)
	if err != nil {
		t.Fatal(err)
	}
	if at := rec.Of(ids[0], []string{"localhost/runrm0:1"}); at.Before(before.Add(-time.Second)) {
		t.Fatalf("last use of runrm0 = %v, want the run at %v (record %+v)", at, before, rec)
	}
	for _, id := range ids[1:] {
		if at := rec.Of(id, nil); !at.IsZero() {
			t.Fatalf("image %.12s never used but recorded at %v", id, at)
		}
	}

	// Above the high watermark (90%); reaching the low one (80%) takes one
	// of the three equal images: the least recently used is runrm1.
	limit := base.UsageBeforeBytes * 100 / 115
	e.writePolicy(t, fmt.Sprintf(`min_age = "0"
keep_last = 0
quota = "%d"`, limit))
	r := e.prune(t, nowFlag, "--podman-socket", svc.Socket)
	var got []string
	for _, it := range r.Removed {
		if it.Reason != prune.ReasonQuota {
			t.Errorf("unexpected removal %+v", it)
		}
		got = append(got, it.ID)
	}
	if !slices.Equal(got, []string{ids[1]}) {
		t.Fatalf("removed %v, want only runrm1 %.12s (runrm0 was just run): %+v", got, ids[1], r.Removed)
	}
	checkStore(t, p)
	p.Run(t, "run", "--rm", "localhost/runrm0:1", "/bin/true")
}
