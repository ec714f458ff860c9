package inventory_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/test/testenv"
)

// figures are the accounting's numbers a cached snapshot must reproduce.
type figures struct {
	Total, Reclaimable, Layers, Containers int64
	Images, Dangling, Intermediate, InUse  int
}

func figuresOf(a *inventory.Accounting) figures {
	return figures{a.TotalBytes, a.ReclaimableBytes, a.Layers.Bytes, a.Containers.Bytes,
		a.Images.Count, a.Images.DanglingCount, a.Images.IntermediateCount, a.Images.InUseCount}
}

func TestSnapshotCache(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.Import(t, "localhost/base:1", map[string]string{"/b": blob(80, 60_000)})
	p.Build(t, "localhost/app:1", "localhost/base:1", map[string]string{"/a": blob(81, 20_000)})
	p.Build(t, "localhost/app:1", "localhost/base:1", map[string]string{"/a": blob(82, 20_000)}) // leaves a dangling image
	p.Run(t, "create", "--name", "stwg-snap-c", "localhost/base:1", "true")
	st := openStore(t, p)
	cached := func() (*layergraph.Snapshot, bool) {
		return inventory.CachedSnapshot(p.Root, p.RunRoot, p.Driver, st.GraphOptions(), "", time.Now())
	}
	if _, ok := cached(); ok {
		t.Fatal("a snapshot was served before any Collect")
	}
	snap, a := collect(t, st)
	c, ok := cached()
	if !ok {
		t.Fatal("no cached snapshot after Collect on an unchanged store")
	}
	if got, want := figuresOf(inventory.Account(c)), figuresOf(a); got != want || want.Dangling != 1 {
		t.Fatalf("cached figures %+v, collected %+v (one dangling image expected)", got, want)
	}

	// The container's writable layer grows without a record change: the
	// cached snapshot measures it again.
	var ctrLayer string
	for _, ctr := range snap.Containers {
		ctrLayer = ctr.LayerID
	}
	if err := os.WriteFile(filepath.Join(p.Root, "vfs", "dir", ctrLayer, "grown"), []byte(blob(83, 300_000)), 0o644); err != nil {
		t.Fatal(err)
	}
	c, ok = cached()
	if !ok {
		t.Fatal("no cached snapshot after a container wrote to its layer")
	}
	_, fresh := collect(t, st)
	got, want := figuresOf(inventory.Account(c)), figuresOf(fresh)
	if got != want {
		t.Fatalf("cached figures after the write %+v, collected %+v", got, want)
	}
	if want.Total-figuresOf(a).Total < 300_000 {
		t.Fatalf("the write of 300,000 bytes grew the total by %d bytes only", want.Total-figuresOf(a).Total)
	}

	// Any record change (a tag, a removal, a container) invalidates it.
	for _, args := range [][]string{
		{"tag", "localhost/app:1", "localhost/app:2"},
		{"rmi", "localhost/app:2"},
		{"rm", "stwg-snap-c"},
	} {
		p.Run(t, args...)
		if _, ok := cached(); ok {
			t.Fatalf("after podman %v the old snapshot was served", args)
		}
		_, fresh := collect(t, st)
		c, ok := cached()
		if !ok {
			t.Fatalf("after podman %v and a Collect no snapshot was cached", args)
		}
		if got, want := figuresOf(inventory.Account(c)), figuresOf(fresh); got != want {
			t.Fatalf("after podman %v: cached %+v, collected %+v", args, got, want)
		}
	}

	// Another driver or additional store is another layout.
	if _, ok := inventory.CachedSnapshot(p.Root, p.RunRoot, p.Driver, []string{"vfs.imagestore=/nonexistent"}, "", time.Now()); ok {
		t.Fatal("a snapshot was served for a layout with another additional store")
	}
}
