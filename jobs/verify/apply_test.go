package verify_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	stypes "go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// TestApplyRechecks plans removals, then changes the store behind the
// plan's back with podman: the executor must notice and fail closed.
func TestApplyRechecks(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	x := p.Import(t, "localhost/bad/x:1", map[string]string{"x": "x"})
	y := p.Import(t, "localhost/bad/y:1", map[string]string{"y": "y"})
	z := p.Import(t, "localhost/bad/z:1", map[string]string{"z": "z"})
	plan := []verify.Action{
		{Kind: verify.ActionRemove, ImageID: x, Names: []string{"localhost/bad/x:1"}},
		{Kind: verify.ActionRemove, ImageID: y, Names: []string{"localhost/bad/y:1"}, UntagInstead: true},
		{Kind: verify.ActionRemove, ImageID: z, Names: []string{"localhost/bad/z:1"}},
	}
	// After planning: containers appear on x and y, z gains a new name.
	p.Run(t, "create", "--name", "stwg-verify-x", x, "/x")
	p.Run(t, "create", "--name", "stwg-verify-y", y, "/y")
	p.Run(t, "tag", z, "localhost/new/z:1")

	st, err := storage.GetStore(stypes.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = st.Shutdown(false) }()
	got, events := verify.Apply(context.Background(), st, plan, slog.New(slog.DiscardHandler))

	if a := got[0]; !a.Skipped || a.Applied || !strings.Contains(a.Reason, "container") {
		t.Errorf("x: %+v", a)
	}
	if a := got[1]; a.Kind != verify.ActionUntag || !a.Applied {
		t.Errorf("y: %+v", a)
	}
	if a := got[2]; !a.Skipped || !strings.Contains(a.Reason, "localhost/new/z:1") {
		t.Errorf("z: %+v", a)
	}
	for _, id := range []string{x, y, z} {
		if _, err := st.Image(id); err != nil {
			t.Errorf("image %s lost: %v", id, err)
		}
	}
	if img, _ := st.Image(y); img != nil && len(img.Names) != 0 {
		t.Errorf("y still named %v", img.Names)
	}
	if len(events) != 1 || events[0].Reference != "localhost/bad/y:1" {
		t.Errorf("events = %+v", events)
	}
}
