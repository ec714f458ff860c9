package inventory_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/test/testenv"
)

// allocated measures dir with the tests' own walker (testenv, independent
// of the code under test and of coreutils).
func allocated(t *testing.T, dir string) int64 {
	t.Helper()
	n, err := testenv.AllocatedBytes(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// near reports whether got is within 1% or 64 KiB of want, the accuracy
// the disk figures promise (metadata files such as layers.json are
// rewritten, not freed, and may change size by a block or so).
func near(got, want int64) bool {
	tol := max(want/100, 64<<10)
	d := got - want
	return d <= tol && d >= -tol
}

// TestDiskFreed: on a base + derived images store, reclaimable bytes equal
// the allocated bytes `podman image prune -a` gives back, and a container's
// writable layer is counted (and given back by `podman rm`). vfs layers are
// full copies of their parents: the store's diff sizes are far off there.
func TestDiskFreed(t *testing.T) {
	testenv.RequireRoot(t)
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			p := testenv.NewPodman(t, driver)
			p.Import(t, "localhost/base:1", map[string]string{"/base/a": blob(21, 1_000_000), "/base/b": blob(22, 1_000_000), "/base/c": blob(23, 1_000_000)})
			for i, n := range []string{"app1", "app2", "app3"} {
				p.Build(t, "localhost/"+n+":1", "localhost/base:1", map[string]string{"/app/x": blob(int64(30+i), 100_000), "/app/y": blob(int64(40+i), 3_000)})
			}
			// A container on app1 with a file in its writable layer.
			p.Run(t, "create", "--name", "stwg-disk-c", "localhost/app1:1", "true")
			src := filepath.Join(t.TempDir(), "written")
			if err := os.WriteFile(src, []byte(blob(50, 500_000)), 0o644); err != nil {
				t.Fatal(err)
			}
			p.Run(t, "cp", src, "stwg-disk-c:/written")

			st := openStore(t, p)
			snap, acc := collect(t, st)
			if acc.SizeBasis != "allocated" {
				t.Fatalf("size basis %q", acc.SizeBasis)
			}
			var recorded int64
			for _, l := range snap.Layers {
				recorded += max(l.UncompressedSize, 0)
			}
			if acc.Containers.Bytes < 500_000 {
				t.Errorf("containers take %d bytes, want ≥ the 500 kB written", acc.Containers.Bytes)
			}

			before := allocated(t, p.Root)
			p.Run(t, "image", "prune", "-a", "-f")
			afterPrune := allocated(t, p.Root)
			freed := before - afterPrune
			if !near(acc.ReclaimableBytes, freed) {
				t.Errorf("reclaimable %d, prune -a gave back %d allocated bytes", acc.ReclaimableBytes, freed)
			}
			// The total is what the store directory holds, bar its
			// metadata files (layers.json, the locks, libpod's database).
			if got := acc.TotalBytes; got > before || before-got > 512<<10 {
				t.Errorf("total %d, store directory %d", got, before)
			}
			_, after := collect(t, st)
			if after.ReclaimableBytes != 0 || !near(acc.TotalBytes-after.TotalBytes, freed) {
				t.Errorf("after prune: reclaimable %d, total fell by %d, disk by %d", after.ReclaimableBytes, acc.TotalBytes-after.TotalBytes, freed)
			}

			// The container's writable layer and directory: what rm frees.
			p.Run(t, "rm", "stwg-disk-c")
			if rmFreed := afterPrune - allocated(t, p.Root); !near(after.Containers.Bytes, rmFreed) {
				t.Errorf("containers %d bytes, podman rm gave back %d", after.Containers.Bytes, rmFreed)
			}
			t.Logf("%s: total %d (recorded diff sizes %d), reclaimable %d, prune freed %d; containers %d",
				driver, acc.TotalBytes, recorded, acc.ReclaimableBytes, freed, acc.Containers.Bytes)
		})
	}
}

// TestDiskHardLinks: a file hard-linked between two layers' diff dirs (as
// overlay's use_hard_links or a zstd:chunked pull leaves them) is counted
// once, as shared: removing either image alone does not free it, removing
// the second does. The link is made after the first layer was measured and
// cached, as a pull would make it: the cache must notice.
func TestDiskHardLinks(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "overlay")
	const size = 600_000
	p.Import(t, "localhost/base:1", map[string]string{"/base": blob(60, 20_000)})
	a := p.Build(t, "localhost/a:1", "localhost/base:1", map[string]string{"/big": blob(61, size)})
	st := openStore(t, p)
	collect(t, st) // measures and caches a's layer
	b := p.Build(t, "localhost/b:1", "localhost/base:1", map[string]string{"/small": blob(62, 1_000)})

	topDiff := func(id string) string {
		img, err := st.Image(id)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(p.Root, "overlay", img.TopLayer, "diff")
	}
	if err := os.Link(filepath.Join(topDiff(a), "big"), filepath.Join(topDiff(b), "big")); err != nil {
		t.Fatal(err)
	}

	snap, acc := collect(t, st)
	if len(snap.Shared) != 1 || snap.Shared[0].Pinned || snap.Shared[0].Bytes < size {
		t.Fatalf("shared inodes %+v, want one of ≥ %d bytes", snap.Shared, size)
	}
	if acc.Layers.HardLinkedBytes != snap.Shared[0].Bytes {
		t.Errorf("hard-linked bytes %d, want %d", acc.Layers.HardLinkedBytes, snap.Shared[0].Bytes)
	}
	by := map[string]inventory.ImageUsage{}
	for _, u := range acc.PerImage {
		by[u.ID] = u
	}
	for _, id := range []string{a, b} {
		if u := by[id]; u.UniqueBytes >= size || u.SizeBytes < size {
			t.Errorf("image %.12s: unique %d, size %d: the linked file is shared", id, u.UniqueBytes, u.SizeBytes)
		}
	}
	// Counted once in the total: the store directory measured with links
	// deduplicated.
	if dir := allocated(t, p.Root); acc.TotalBytes > dir || dir-acc.TotalBytes > 512<<10 {
		t.Errorf("total %d, store directory %d", acc.TotalBytes, dir)
	}
	// Removing a alone leaves the file (b links it); the model agrees.
	sim := layergraph.NewSimulation(snap)
	costA := sim.Cost(a)
	before := allocated(t, p.Root)
	p.Run(t, "rmi", "localhost/a:1")
	mid := allocated(t, p.Root)
	if !near(costA, before-mid) || before-mid >= size {
		t.Errorf("removing a: model %d, disk gave back %d (the linked file must stay)", costA, before-mid)
	}
	sim.Remove(a)
	costB := sim.Cost(b)
	// A fresh snapshot (the cache still lists b's inode as linked) agrees.
	_, acc2 := collect(t, st)
	for _, u := range acc2.PerImage {
		// (up to the records' share of images.json and layers.json,
		// which changes as the files shrink)
		if d := u.UniqueBytes - costB; u.ID == b && (d >= 4096 || d <= -4096) {
			t.Errorf("b: unique %d in a fresh snapshot, %d in the model", u.UniqueBytes, costB)
		}
	}
	p.Run(t, "rmi", "localhost/b:1")
	freedB := mid - allocated(t, p.Root)
	if !near(costB, freedB) || freedB < size {
		t.Errorf("removing b: model %d, disk gave back %d (the linked file goes)", costB, freedB)
	}
	t.Logf("shared %d; a freed %d (model %d); b freed %d (model %d)", snap.Shared[0].Bytes, before-mid, costA, freedB, costB)
}

// TestDiskCache: layer measurements are cached in the run root by layer ID
// (a second snapshot reads them instead of walking), container layers are
// not (they change), and entries of layers that are gone are dropped.
func TestDiskCache(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.Import(t, "localhost/base:1", map[string]string{"/b": blob(70, 50_000)})
	p.Build(t, "localhost/app:1", "localhost/base:1", map[string]string{"/a": blob(71, 20_000)})
	p.Run(t, "create", "--name", "stwg-cache-c", "localhost/base:1", "true")
	st := openStore(t, p)
	snap, _ := collect(t, st)
	path := filepath.Join(p.RunRoot, inventory.DiskCacheName)
	type cacheFile struct {
		Layers map[string]map[string]any `json:"layers"`
	}
	read := func() map[string]map[string]any {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c cacheFile
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		return c.Layers
	}
	ctrLayer := ""
	for _, c := range snap.Containers {
		ctrLayer = c.LayerID
	}
	cached := read()
	if len(cached) != len(snap.Layers)-1 {
		t.Errorf("cache holds %d layers, want the %d image layers", len(cached), len(snap.Layers)-1)
	}
	if _, ok := cached[ctrLayer]; ok || ctrLayer == "" {
		t.Errorf("the container's layer %q is cached", ctrLayer)
	}
	// A second snapshot takes the cached figure: mark one to see it.
	var appTop string
	if img, err := st.Image("localhost/app:1"); err == nil {
		appTop = img.TopLayer
	} else {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	layers := read()
	usage := layers[appTop]["usage"].(map[string]any)
	usage["bytes"] = 123456789
	raw["layers"], _ = json.Marshal(layers)
	data, _ = json.Marshal(raw)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	snap2, _ := collect(t, st)
	for _, l := range snap2.Layers {
		if l.ID == appTop && l.DiskBytes < 123456789 {
			t.Errorf("layer %.12s: %d bytes, the cached figure was not used", l.ID, l.DiskBytes)
		}
	}
	// Image data: unchanged records reuse the cached figure (marked as
	// above); data written through the store (as podman writes a
	// signature or a manifest) is seen at once.
	appImg, err := st.Image("localhost/app:1")
	if err != nil {
		t.Fatal(err)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(data, &whole); err != nil {
		t.Fatal(err)
	}
	var images map[string]map[string]any
	if err := json.Unmarshal(whole["images"], &images); err != nil {
		t.Fatal(err)
	}
	images[appImg.ID]["usage"].(map[string]any)["bytes"] = 987654321
	whole["images"], _ = json.Marshal(images)
	data, _ = json.Marshal(whole)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	imageBytes := func() int64 {
		t.Helper()
		snap, _ := collect(t, st)
		for _, img := range snap.Images {
			if img.ID == appImg.ID {
				return img.DiskBytes
			}
		}
		t.Fatalf("image %.12s not in the snapshot", appImg.ID)
		return 0
	}
	if got := imageBytes(); got < 987654321 {
		t.Errorf("image %.12s: %d bytes, the cached figure was not used for unchanged records", appImg.ID, got)
	}
	if err := st.SetImageBigData(appImg.ID, "stwg-extra", []byte(blob(72, 300_000)), nil); err != nil {
		t.Fatal(err)
	}
	if got := imageBytes(); got >= 987654321 || got < 300_000 {
		t.Errorf("image %.12s: %d bytes after 300,000 bytes of new data, want it measured again", appImg.ID, got)
	}

	// Gone layers leave the cache.
	p.Run(t, "rmi", "localhost/app:1")
	collect(t, st)
	if _, ok := read()[appTop]; ok {
		t.Errorf("removed layer %.12s still cached", appTop)
	}
}
