package inventory_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/test/testenv"
)

func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// blob returns n pseudo-random printable bytes (incompressible enough that
// every layer has a distinct, sizeable diff).
func blob(seed int64, n int) string {
	r := rand.New(rand.NewSource(seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('!' + r.Intn(90))
	}
	return string(b)
}

// openStore opens p's store in this process, like stowage does.
func openStore(t *testing.T, p *testenv.Podman) storage.Store {
	t.Helper()
	st, err := storage.GetStore(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Shutdown(false) })
	return st
}

func collect(t *testing.T, st storage.Store) (*layergraph.Snapshot, *inventory.Accounting) {
	t.Helper()
	s, err := inventory.Collect(context.Background(), st, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s, inventory.Account(s)
}

// scenario is the store every accounting test builds with real podman:
// a base image, builds FROM it (those with two COPY steps leave an
// intermediate image), several tags on one image, a dangling image (its
// tag moved to a rebuild) and a container on one image.
type scenario struct {
	base, app, other, dangling, rebuilt string
}

func buildScenario(t *testing.T, p *testenv.Podman) scenario {
	t.Helper()
	var s scenario
	s.base = p.Import(t, "localhost/base:1", map[string]string{"/etc/base": blob(1, 200_000), "/usr/lib/x": blob(2, 50_000)})
	s.app = p.Build(t, "localhost/app:1", "localhost/base:1", map[string]string{"/app/a": blob(3, 40_000), "/app/b": blob(4, 10_000)})
	p.Run(t, "tag", "localhost/app:1", "localhost/app:2", "localhost/app:latest")
	s.other = p.Build(t, "localhost/other:1", "localhost/base:1", map[string]string{"/o": blob(5, 30_000)})
	s.dangling = p.Build(t, "localhost/dang:1", "localhost/base:1", map[string]string{"/d": blob(6, 20_000), "/e": blob(9, 3_000)})
	s.rebuilt = p.Build(t, "localhost/dang:1", "localhost/base:1", map[string]string{"/d": blob(7, 25_000), "/e": blob(10, 4_000)})
	p.Run(t, "create", "--name", "stwg-inv-c1", "localhost/other:1", "true")
	return s
}

type podmanImage struct {
	ID         string `json:"Id"`
	Size       int64  `json:"Size"`
	Containers int    `json:"Containers"`
}

func podmanImages(t *testing.T, p *testenv.Podman, args ...string) map[string]podmanImage {
	t.Helper()
	var list []podmanImage
	if err := json.Unmarshal([]byte(p.Run(t, append([]string{"images", "--format", "json"}, args...)...)), &list); err != nil {
		t.Fatal(err)
	}
	out := map[string]podmanImage{}
	for _, i := range list {
		out[i.ID] = i
	}
	return out
}

func idSet(out string) map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Fields(out) {
		m[strings.TrimPrefix(l, "sha256:")] = true
	}
	return m
}

func TestDF(t *testing.T) {
	testenv.RequireRoot(t)
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			p := testenv.NewPodman(t, driver)
			sc := buildScenario(t, p)
			st := openStore(t, p)
			snap, acc := collect(t, st)

			// Per image: container count exactly as podman images reports
			// it; the sizes are on disk (podman's are the diff sizes).
			pi := podmanImages(t, p, "-a")
			if len(pi) != acc.Images.Count {
				t.Fatalf("podman lists %d images, stowage %d", len(pi), acc.Images.Count)
			}
			dangling := idSet(p.Run(t, "images", "-a", "-q", "--no-trunc", "--filter", "dangling=true"))
			top := idSet(p.Run(t, "images", "-q", "--no-trunc"))
			byID := map[string]inventory.ImageUsage{}
			for _, u := range acc.PerImage {
				byID[u.ID] = u
				want, ok := pi[u.ID]
				if !ok {
					t.Fatalf("image %s unknown to podman", u.ID)
				}
				if u.Containers != want.Containers {
					t.Errorf("image %.12s: containers %d, podman %d", u.ID, u.Containers, want.Containers)
				}
				if u.Dangling != dangling[u.ID] {
					t.Errorf("image %.12s: dangling %v, podman %v", u.ID, u.Dangling, dangling[u.ID])
				}
				// podman images without -a hides exactly the intermediate images.
				if u.Intermediate != !top[u.ID] {
					t.Errorf("image %.12s: intermediate %v, podman lists it by default: %v", u.ID, u.Intermediate, top[u.ID])
				}
				if u.SharedBytes != u.SizeBytes-u.UniqueBytes || u.UniqueBytes < 0 || u.UniqueBytes > u.SizeBytes {
					t.Errorf("image %.12s: inconsistent unique %d / shared %d / size %d", u.ID, u.UniqueBytes, u.SharedBytes, u.SizeBytes)
				}
			}
			if got := byID[sc.app].Names; len(got) != 3 {
				t.Errorf("app names = %v, want 3 tags", got)
			}
			if !byID[sc.dangling].Dangling || byID[sc.rebuilt].Dangling {
				t.Errorf("dangling flags: old %v rebuilt %v", byID[sc.dangling].Dangling, byID[sc.rebuilt].Dangling)
			}
			if acc.Images.IntermediateCount < 3 {
				t.Errorf("intermediate_count = %d, want ≥ 3 (one per two-step build: app, dang, its rebuild)", acc.Images.IntermediateCount)
			}
			if acc.Images.InUseCount != 1 || byID[sc.other].Containers != 1 {
				t.Errorf("in_use_count = %d, other's containers = %d", acc.Images.InUseCount, byID[sc.other].Containers)
			}
			// The base is shared: removing it alone frees only its record.
			if b := byID[sc.base]; b.UniqueBytes >= b.SizeBytes/10 {
				t.Errorf("base unique %d of %d: its layer is shared", b.UniqueBytes, b.SizeBytes)
			}
			if acc.Layers.OrphanCount != 0 {
				t.Errorf("orphans %v in a podman-built store", acc.Layers.Orphans)
			}
			if acc.Filesystem.SizeBytes <= 0 || acc.Filesystem.FreeBytes <= 0 || acc.Filesystem.FreeBytes > acc.Filesystem.SizeBytes {
				t.Errorf("filesystem %+v", acc.Filesystem)
			}

			// Every image's unique bytes equal the real dry run's layers.
			for _, u := range acc.PerImage {
				if u.Containers > 0 {
					continue
				}
				layers, err := st.DeleteImage(u.ID, false)
				if err != nil {
					t.Fatalf("dry run %.12s: %v", u.ID, err)
				}
				want := bigData(snap, u.ID) + layerBytes(snap, layers)
				if u.UniqueBytes != want {
					t.Errorf("image %.12s: unique %d, dry run frees %d", u.ID, u.UniqueBytes, want)
				}
			}

			// The CLI, pointed at the store with podman's global flags, prints
			// the same figures, and a podman-like table.
			var cli inventory.Accounting
			if err := json.Unmarshal([]byte(p.Stowage(t, "df", "--format", "json")), &cli); err != nil {
				t.Fatal(err)
			}
			if cli.TotalBytes != acc.TotalBytes || cli.ReclaimableBytes != acc.ReclaimableBytes || cli.Images.Count != acc.Images.Count || cli.Driver != driver {
				t.Errorf("stowage df: %+v, in-process: %+v", cli, acc)
			}
			for _, all := range []bool{false, true} {
				args, want := []string{"images", "--format", "{{.ID}}"}, top
				if all {
					args, want = append(args, "-a"), idSet(p.Run(t, "images", "-a", "-q", "--no-trunc"))
				}
				if got := idSet(p.Stowage(t, args...)); fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("stowage %v lists %v, podman %v", args, got, want)
				}
			}
			table := p.Stowage(t, "images")
			if !strings.HasPrefix(table, "REPOSITORY") || strings.Count(table, "localhost/app ") != 3 || !strings.Contains(table, "<none>") {
				t.Errorf("stowage images table:\n%s", table)
			}

			// reclaimable_bytes is what podman image prune -a frees.
			duBefore := allocated(t, p.Root)
			p.Run(t, "image", "prune", "-a", "-f")
			_, after := collect(t, st)
			duAfter := allocated(t, p.Root)
			if freed := acc.TotalBytes - after.TotalBytes; !near(acc.ReclaimableBytes, freed) {
				t.Errorf("reclaimable_bytes %d, podman image prune -a freed %d (total %d → %d)", acc.ReclaimableBytes, freed, acc.TotalBytes, after.TotalBytes)
			}
			// Only the image in use stays (its base is not used by a
			// container itself, so prune -a removes its record).
			if after.ReclaimableBytes != 0 || after.Images.Count != 1 || after.PerImage[0].ID != sc.other {
				t.Errorf("after prune: %d images, reclaimable %d; want only other, 0", after.Images.Count, after.ReclaimableBytes)
			}
			// On disk: the allocated bytes the graphroot lost.
			duFreed := duBefore - duAfter
			if !near(acc.ReclaimableBytes, duFreed) {
				t.Errorf("the graphroot gave back %d allocated bytes, reclaimable %d", duFreed, acc.ReclaimableBytes)
			}
			t.Logf("%s: total %d reclaimable %d; prune freed %d (du %d)", driver, acc.TotalBytes, acc.ReclaimableBytes, acc.TotalBytes-after.TotalBytes, duFreed)
		})
	}
}

func bigData(s *layergraph.Snapshot, id string) int64 {
	for _, i := range s.Images {
		if i.ID == id {
			return i.DataBytes()
		}
	}
	return 0
}

func layerBytes(s *layergraph.Snapshot, ids []string) int64 {
	var n int64
	for _, id := range ids {
		for _, l := range s.Layers {
			if l.ID == id {
				n += l.Bytes()
			}
		}
	}
	return n
}

// TestSim (a short name: podman limits the runroot path to 50 characters)
// replays removals one at a time: before
// each real store.DeleteImage(id, true), the simulation must predict the
// dry run (DeleteImage(id, false)) layer for layer, and after it the real
// layer set must equal the model's.
func TestSim(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	sc := buildScenario(t, p)
	// A second chain from the app, and an orphan layer made directly.
	p.Build(t, "localhost/app2:1", "localhost/app:1", map[string]string{"/x": blob(8, 5_000)})
	st := openStore(t, p)
	orphan, err := st.CreateLayer("", "", nil, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, acc := collect(t, st)
	if acc.Layers.OrphanCount != 1 || acc.Layers.Orphans[0] != orphan.ID {
		t.Fatalf("orphans = %v, want [%s]", acc.Layers.Orphans, orphan.ID)
	}

	// Order: the shared base first (frees only its record), then the
	// rest oldest first, the in-use image included (must be refused).
	order := []string{sc.base}
	imgs := append([]layergraph.Image(nil), snap.Images...)
	sort.Slice(imgs, func(i, j int) bool { return imgs[i].Created.Before(imgs[j].Created) })
	for _, i := range imgs {
		if i.ID != sc.base {
			order = append(order, i.ID)
		}
	}
	sim := layergraph.NewSimulation(snap)
	for step, id := range order {
		t.Run(fmt.Sprintf("%02d-%.12s", step, id), func(t *testing.T) {
			cost := sim.Cost(id)
			dry, err := st.DeleteImage(id, false)
			if sim.InUse(id) {
				if !errors.Is(err, storage.ErrImageUsedByContainer) {
					t.Fatalf("in use per model, DeleteImage: %v", err)
				}
				if r := sim.Remove(id); len(r.Layers) != 0 || r.Bytes != 0 || cost != 0 {
					t.Fatalf("in-use image: removal %+v cost %d", r, cost)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := sim.Remove(id)
			if strings.Join(r.Layers, ",") != strings.Join(dry, ",") {
				t.Fatalf("model removes %v, dry run %v", r.Layers, dry)
			}
			if r.Bytes != cost {
				t.Fatalf("Cost %d, Remove %d", cost, r.Bytes)
			}
			if want := bigData(snap, id) + layerBytes(snap, dry); r.Bytes != want {
				t.Fatalf("bytes %d, want %d", r.Bytes, want)
			}
			real, err := st.DeleteImage(id, true)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(real, ",") != strings.Join(dry, ",") {
				t.Fatalf("real deletion %v differs from its dry run %v", real, dry)
			}
			// The store now holds exactly the layers the model still has.
			s2, _ := collect(t, st)
			sim2 := layergraph.NewSimulation(s2)
			// Costs agree up to the records' shares of layers.json and
			// images.json, which change as the files shrink; a layer more
			// or less would differ by its directory's block at least.
			for _, i := range s2.Images {
				if d := sim2.Cost(i.ID) - sim.Cost(i.ID); d >= 4096 || d <= -4096 {
					t.Errorf("after step: image %.12s cost %d in a fresh model, %d incrementally", i.ID, sim2.Cost(i.ID), sim.Cost(i.ID))
				}
			}
			if len(s2.Images) != countPresent(sim, snap) {
				t.Errorf("store has %d images, model %d", len(s2.Images), countPresent(sim, snap))
			}
		})
	}
}

func countPresent(sim *layergraph.Simulation, s *layergraph.Snapshot) int {
	n := 0
	for _, i := range s.Images {
		if sim.Has(i.ID) {
			n++
		}
	}
	return n
}

// TestRO: images of an additional (read-only) image store are marked and
// never counted as reclaimable; a layer built on them stops the walk.
func TestRO(t *testing.T) {
	testenv.RequireRoot(t)
	ro := testenv.NewPodman(t, "vfs")
	roID := ro.Import(t, "localhost/shared:1", map[string]string{"/s": blob(11, 80_000)})
	p := testenv.NewPodman(t, "vfs")
	own := p.Import(t, "localhost/own:1", map[string]string{"/o": blob(12, 20_000)})
	st, err := storage.GetStore(types.StoreOptions{
		GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: "vfs",
		GraphDriverOptions: []string{"vfs.imagestore=" + ro.Root},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Shutdown(false) })
	// A layer of the writable store on top of the read-only image's layer.
	roImg, err := st.Image(roID)
	if err != nil {
		t.Fatal(err)
	}
	child, err := st.CreateLayer("", roImg.TopLayer, nil, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateImage("", []string{"localhost/child:1"}, child.ID, "", nil); err != nil {
		t.Fatal(err)
	}
	snap, acc := collect(t, st)
	by := map[string]inventory.ImageUsage{}
	for _, u := range acc.PerImage {
		by[u.ID] = u
	}
	if !by[roID].ReadOnly || by[own].ReadOnly || acc.Images.ReadOnlyCount != 1 || acc.Images.Count != 3 {
		t.Fatalf("read-only flags: %+v", acc.PerImage)
	}
	if by[roID].UniqueBytes != 0 {
		t.Errorf("read-only image frees %d", by[roID].UniqueBytes)
	}
	// The read-only store is counted apart, on disk, and is no part of
	// the writable store's total.
	roDisk := allocated(t, filepath.Join(ro.Root, "vfs", "dir")) + allocated(t, filepath.Join(ro.Root, "vfs-images", roID))
	if !near(acc.Images.ReadOnlyBytes, roDisk) || acc.Images.ReadOnlyBytes < 80_000 {
		t.Errorf("read-only bytes %d, the read-only store's layer and image take %d", acc.Images.ReadOnlyBytes, roDisk)
	}
	for _, l := range snap.Layers {
		if !l.Measured {
			t.Errorf("layer %.12s (read-only %v) not measured on disk", l.ID, l.ReadOnly)
		}
	}
	if dir := allocated(t, p.Root); acc.TotalBytes > dir {
		t.Errorf("total %d exceeds the writable store's %d: read-only bytes counted in", acc.TotalBytes, dir)
	}
	// Reclaimable: own (layer + record) and child (its empty layer + no
	// big data); never the read-only layer under child.
	var ownImg layergraph.Image
	for _, i := range snap.Images {
		if i.ID == own {
			ownImg = i
		}
	}
	want := by[own].SizeBytes + layerBytes(snap, []string{child.ID})
	if acc.ReclaimableBytes != want || ownImg.BigDataBytes == 0 {
		t.Errorf("reclaimable %d, want %d", acc.ReclaimableBytes, want)
	}
	sim := layergraph.NewSimulation(snap)
	for _, id := range []string{by[own].ID, roID} {
		if sim.InUse(id) {
			t.Errorf("%s in use", id)
		}
	}
	for _, u := range acc.PerImage {
		if u.Names[0] == "localhost/child:1" {
			if r := sim.Remove(u.ID); len(r.Layers) != 1 || r.Layers[0] != child.ID {
				t.Errorf("child removal %v, want only %s", r.Layers, child.ID)
			}
		}
	}
}
