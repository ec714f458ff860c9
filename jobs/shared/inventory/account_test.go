package inventory_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/layergraph"
)

func TestAccountOrphansAndFlags(t *testing.T) {
	s := &layergraph.Snapshot{
		Layers: []layergraph.Layer{
			{ID: "l1", UncompressedSize: 100}, {ID: "l2", Parent: "l1", UncompressedSize: 20},
			{ID: "o1", UncompressedSize: 7}, {ID: "o2", Parent: "o1", UncompressedSize: 8},
			{ID: "c1", Parent: "l2"},
		},
		Images: []layergraph.Image{
			{ID: "base", TopLayer: "l1", BigDataBytes: 1, Names: []string{"localhost/base:1"}},
			{ID: "app", TopLayer: "l2", BigDataBytes: 2, Names: []string{"localhost/app:1"}},
			{ID: "gone", TopLayer: "l2", BigDataBytes: 3},
		},
		Containers: []layergraph.Container{{ID: "ctr", ImageID: "app", LayerID: "c1"}},
	}
	// "gone" shares app's top layer with a shorter history: not a child.
	a := inventory.Account(s)
	if a.Layers.OrphanCount != 2 || a.Layers.OrphanBytes != 15 {
		t.Errorf("orphans %v (%d bytes), want o1 o2 (15)", a.Layers.Orphans, a.Layers.OrphanBytes)
	}
	if a.TotalBytes != 100+20+7+8+1+2+3 {
		t.Errorf("total %d", a.TotalBytes)
	}
	// base: record only (in use below app); gone: record only (shares l2).
	if a.ReclaimableBytes != 1+3 {
		t.Errorf("reclaimable %d, want 4", a.ReclaimableBytes)
	}
	by := map[string]inventory.ImageUsage{}
	for _, u := range a.PerImage {
		by[u.ID] = u
	}
	if !by["gone"].Dangling || by["gone"].Intermediate || by["base"].Dangling {
		t.Errorf("flags: %+v", by)
	}
	if by["app"].SizeBytes != 122 || by["app"].Containers != 1 || by["app"].UniqueBytes != 2 {
		// Unique for an image in use: as if its container were gone; l2
		// is still gone's top layer, so only the record.
		t.Errorf("app: %+v", by["app"])
	}
	if a.Images.InUseCount != 1 || a.Images.DanglingCount != 1 {
		t.Errorf("images: %+v", a.Images)
	}
}

// TestAccountUsesGraph: df and images count orphans and classify images
// with the layer graph prune uses (layergraph.Graph).
func TestAccountUsesGraph(t *testing.T) {
	s := &layergraph.Snapshot{
		Layers: []layergraph.Layer{
			{ID: "base"}, {ID: "mid", Parent: "base"}, {ID: "top", Parent: "mid"},
			{ID: "mapped"},
			{ID: "ctr", Parent: "top"},
			{ID: "orphan", Parent: "base"}, {ID: "orphankid", Parent: "orphan"},
			{ID: "lone"},
			{ID: "l1"}, {ID: "l2", Parent: "l1"},
			{ID: "s1"},
		},
		Images: []layergraph.Image{
			{ID: "img", Names: []string{"localhost/a:1"}, TopLayer: "top", MappedTopLayers: []string{"mapped"}},
			{ID: "broken", TopLayer: "missing"},
			{ID: "parent", TopLayer: "l1"},
			{ID: "child", Names: []string{"localhost/child:1"}, TopLayer: "l2"},
			{ID: "short", TopLayer: "s1", HistoryLen: 3},
			{ID: "long", TopLayer: "s1", HistoryLen: 4},
		},
		Containers: []layergraph.Container{{ID: "c1", ImageID: "img", LayerID: "ctr"}},
	}
	g := layergraph.NewGraph(s)
	var orphans []string
	for _, l := range s.Layers {
		if !g.Reachable(l.ID) {
			orphans = append(orphans, l.ID)
		}
	}
	a := inventory.Account(s)
	if want := []string{"orphan", "orphankid", "lone"}; !slices.Equal(orphans, want) || !slices.Equal(a.Layers.Orphans, orphans) {
		t.Errorf("Account orphans %v, graph %v, want %v", a.Layers.Orphans, orphans, want)
	}
	kinds := map[string]int{}
	for _, u := range a.PerImage {
		img := &s.Images[slices.IndexFunc(s.Images, func(i layergraph.Image) bool { return i.ID == u.ID })]
		if u.Dangling != g.Dangling(img) || u.Intermediate != g.Intermediate(img) {
			t.Errorf("Account %s: dangling %v intermediate %v, graph %v %v", u.ID, u.Dangling, u.Intermediate, g.Dangling(img), g.Intermediate(img))
		}
		if u.Dangling {
			kinds["dangling"]++
		}
		if u.Intermediate {
			kinds["intermediate"]++
		}
	}
	// broken and long are dangling; parent and short intermediate.
	if kinds["dangling"] != 2 || kinds["intermediate"] != 2 {
		t.Errorf("classes %v, want 2 dangling, 2 intermediate", kinds)
	}
}

// TestAccountSharedInodes: an inode hard-linked between layers counts once
// in the store's and the image's size, as the writable store's when any
// writable layer holds it.
func TestAccountSharedInodes(t *testing.T) {
	s := &layergraph.Snapshot{
		Layers: []layergraph.Layer{
			{ID: "base", UncompressedSize: 100},
			{ID: "a", Parent: "base", UncompressedSize: 10, Shared: []int{0, 1}},
			{ID: "b", Parent: "base", UncompressedSize: 20, Shared: []int{0, 1}},
			{ID: "c", Parent: "base", UncompressedSize: 30},
			{ID: "ro", UncompressedSize: 5, ReadOnly: true, Shared: []int{2}},
			{ID: "d", Parent: "ro", UncompressedSize: 1, Shared: []int{2}},
		},
		Images: []layergraph.Image{
			{ID: "A", TopLayer: "a", BigDataBytes: 1}, {ID: "B", TopLayer: "b", BigDataBytes: 1},
			{ID: "C", TopLayer: "c", BigDataBytes: 1}, {ID: "BASE", TopLayer: "base", BigDataBytes: 1},
			{ID: "D", TopLayer: "d", BigDataBytes: 1},
		},
		Shared: []layergraph.SharedInode{{Bytes: 1000}, {Bytes: 7000, Pinned: true}, {Bytes: 300}},
	}
	acc := inventory.Account(s)
	// The read-only layer "ro" holds the 300-byte inode too, but so does
	// the writable "d": it is the writable store's.
	if acc.Layers.HardLinkedBytes != 1000+7000+300 {
		t.Errorf("hard-linked bytes %d", acc.Layers.HardLinkedBytes)
	}
	if got := inventory.StoreBytes(s); got != acc.TotalBytes || acc.Images.ReadOnlyBytes != 5 {
		t.Errorf("StoreBytes %d, total %d, read-only %d", got, acc.TotalBytes, acc.Images.ReadOnlyBytes)
	}
	by := map[string]inventory.ImageUsage{}
	for _, u := range acc.PerImage {
		by[u.ID] = u
	}
	if by["A"].SizeBytes != 1+10+100+1000+7000 || by["A"].UniqueBytes != 11 {
		t.Errorf("A: %+v", by["A"])
	}
}

// BenchmarkAccount accounts for 10,000 images over 100 shared base chains
// of 10 layers, each image 2 layers on a base layer, one in 50 in use.
func BenchmarkAccount(b *testing.B) {
	s := &layergraph.Snapshot{}
	for c := 0; c < 100; c++ {
		parent := ""
		for d := 0; d < 10; d++ {
			id := fmt.Sprintf("b%d-%d", c, d)
			s.Layers = append(s.Layers, layergraph.Layer{ID: id, Parent: parent, UncompressedSize: 1000})
			parent = id
		}
		s.Images = append(s.Images, layergraph.Image{ID: fmt.Sprintf("base%d", c), TopLayer: parent, BigDataBytes: 10})
	}
	for i := 0; len(s.Images) < 10_000; i++ {
		parent := fmt.Sprintf("b%d-%d", (i*7)%100, (i*3)%10)
		for d := 0; d < 2; d++ {
			id := fmt.Sprintf("i%d-%d", i, d)
			s.Layers = append(s.Layers, layergraph.Layer{ID: id, Parent: parent, UncompressedSize: 500})
			parent = id
		}
		s.Images = append(s.Images, layergraph.Image{ID: fmt.Sprintf("img%d", i), TopLayer: parent, BigDataBytes: 10})
		if i%50 == 0 {
			s.Containers = append(s.Containers, layergraph.Container{ID: fmt.Sprintf("c%d", i), ImageID: fmt.Sprintf("img%d", i), LayerID: fmt.Sprintf("cl%d", i)})
			s.Layers = append(s.Layers, layergraph.Layer{ID: fmt.Sprintf("cl%d", i), Parent: parent})
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		inventory.Account(s)
	}
}
