package lastuse_test

import (
	"context"
	"strings"
	"testing"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/test/testenv"
)

// TestRunRmRecordedFromPodmanEvents runs a real `podman run --rm`, which
// leaves no container behind, and checks that a scan records the image's use
// from a real `podman system service`'s events API, by image ID, and nothing
// for an image no container touched.
func TestRunRmRecordedFromPodmanEvents(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	used := p.ImportRunnable(t, "localhost/ev-used:1", map[string]string{"/marker": "used"})
	idle := p.ImportRunnable(t, "localhost/ev-idle:1", map[string]string{"/marker": "idle"})
	svc := p.StartPodmanService(t)
	ctx := context.Background()

	before := time.Now()
	if out := p.Run(t, "run", "--rm", "localhost/ev-used:1", "/bin/sh", "-c", "echo ran-in-container"); out != "ran-in-container" {
		t.Fatalf("podman run output %q", out)
	}
	after := time.Now()
	if ps := p.Run(t, "ps", "-aq"); ps != "" {
		t.Fatalf("run --rm left containers: %s", ps)
	}

	st, err := storage.GetStore(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = st.Shutdown(false) }()
	snap, err := inventory.Collect(ctx, st, "", after)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Containers) != 0 {
		t.Fatalf("snapshot has containers %+v: the use would not come from events", snap.Containers)
	}

	// A prune scans the store before it asks for the events, so by then the
	// window's end (the scan time) is in the past; on a big store by more
	// than a second. Reproduce that: podman 4 stops reading its event log
	// as soon as a requested "until" has passed.
	time.Sleep(time.Until(after.Truncate(time.Second).Add(1200 * time.Millisecond)))
	cl := podmanapi.New(svc.Socket, 30*time.Second)
	defer cl.Close()
	src := lastuse.PodmanEvents{Client: cl}
	// The source itself: the create and start events name the image as typed.
	uses, err := src.ContainerUses(ctx, before.Add(-time.Second), after)
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, u := range uses {
		if strings.TrimPrefix(u.Name, "sha256:") == "localhost/ev-used:1" {
			named++
		}
	}
	if named < 2 {
		t.Fatalf("events %+v: want create and start of localhost/ev-used:1", uses)
	}

	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := lastuse.Scan(ctx, db, snap, src, after); err != nil {
		t.Fatal(err)
	}
	rec, err := lastuse.Load(db)
	if err != nil {
		t.Fatal(err)
	}
	at := rec.ByID[used]
	// Event times come from podman's clock with nanoseconds; allow for the
	// API's whole-second window only on the lower side.
	if at.Before(before.Add(-time.Second)) || at.After(after) {
		t.Fatalf("recorded use of %.12s at %v, want between %v and %v (record %+v)", used, at, before, after, rec)
	}
	if got := rec.Of(idle, []string{"localhost/ev-idle:1"}); !got.IsZero() {
		t.Fatalf("unused image recorded as used at %v", got)
	}
	if !rec.Cursor.Equal(after) {
		t.Fatalf("cursor %v, want %v", rec.Cursor, after)
	}
}
