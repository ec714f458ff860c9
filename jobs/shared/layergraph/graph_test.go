package layergraph

import (
	"slices"
	"testing"
	"time"
)

func TestGraphReachable(t *testing.T) {
	s := &Snapshot{
		Layers: []Layer{
			{ID: "base"}, {ID: "mid", Parent: "base"}, {ID: "top", Parent: "mid"},
			{ID: "mapped"},
			{ID: "ctr", Parent: "top"},
			{ID: "ctrbase"}, {ID: "ctronly", Parent: "ctrbase"},
			{ID: "orphan", Parent: "base"}, {ID: "orphankid", Parent: "orphan"},
			{ID: "lone"},
		},
		Images: []Image{
			{ID: "img", Names: []string{"localhost/a:1"}, TopLayer: "top", MappedTopLayers: []string{"mapped"}},
			{ID: "broken", TopLayer: "missing"}, // a missing top layer reaches nothing else
		},
		Containers: []Container{{ID: "c1", ImageID: "img", LayerID: "ctr"}, {ID: "c2", LayerID: "ctronly"}},
	}
	g := NewGraph(s)
	var orphans []string
	for _, l := range s.Layers {
		if !g.Reachable(l.ID) {
			orphans = append(orphans, l.ID)
		}
	}
	if want := []string{"orphan", "orphankid", "lone"}; !slices.Equal(orphans, want) {
		t.Fatalf("orphans %v, want %v", orphans, want)
	}
}

// TestGraphDanglingIntermediate: one rule, libimage's, for df, images and
// prune: a nameless image is intermediate when another image's top layer
// sits directly on its top layer, or shares it with a longer history;
// otherwise it is dangling. Other child layers (a container's, an orphan's,
// the middle of another image's chain) do not make it intermediate.
func TestGraphDanglingIntermediate(t *testing.T) {
	layers := []Layer{
		{ID: "l1"}, {ID: "l2", Parent: "l1"}, // child image on l1
		{ID: "m1"}, {ID: "m2", Parent: "m1"}, {ID: "m3", Parent: "m2"}, // image on m3: m1 carries it two layers down
		{ID: "o1"}, {ID: "o2", Parent: "o1"}, // o2: an orphan (a pull in flight)
		{ID: "c1"}, {ID: "cl", Parent: "c1"}, // cl: a container's layer
		{ID: "s1"},                           // shared top, histories differ
		{ID: "n1"}, {ID: "n2", Parent: "n1"}, // named parent
	}
	images := []Image{
		{ID: "parent", TopLayer: "l1"},
		{ID: "child", Names: []string{"localhost/child:1"}, TopLayer: "l2"},
		{ID: "deepbase", TopLayer: "m1"},
		{ID: "deep", Names: []string{"localhost/deep:1"}, TopLayer: "m3"},
		{ID: "inflight", TopLayer: "o1"},
		{ID: "ctrbase", TopLayer: "c1"},
		{ID: "short", TopLayer: "s1", HistoryLen: 3},
		{ID: "long", Names: []string{"localhost/long:1"}, TopLayer: "s1", HistoryLen: 4},
		{ID: "named", Names: []string{"localhost/named:1"}, TopLayer: "n1"},
		{ID: "namedkid", TopLayer: "n2"},
		{ID: "emptyA", HistoryLen: 1},
		{ID: "emptyB", HistoryLen: 2},
	}
	s := &Snapshot{Layers: layers, Images: images, Containers: []Container{{ID: "c", ImageID: "ctrbase", LayerID: "cl"}}}
	g := NewGraph(s)
	for id, want := range map[string]string{
		"parent":   "intermediate",
		"child":    "",
		"deepbase": "dangling", // libimage looks one layer up only
		"inflight": "dangling",
		"ctrbase":  "dangling",
		"short":    "intermediate",
		"long":     "",
		"named":    "", // names: neither, whatever its children
		"namedkid": "dangling",
		"emptyA":   "intermediate", // no layers, shorter history than emptyB
		"emptyB":   "dangling",
	} {
		img := &images[slices.IndexFunc(images, func(i Image) bool { return i.ID == id })]
		got := ""
		switch {
		case g.Intermediate(img) && g.Dangling(img):
			t.Fatalf("%s is both dangling and intermediate", id)
		case g.Intermediate(img):
			got = "intermediate"
		case g.Dangling(img):
			got = "dangling"
		}
		if got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
}

// TestGraphChainsAndOrphans: what an image's chains hold, what images alone
// reach, and which orphans may go in which order, on one store.
func TestGraphChainsAndOrphans(t *testing.T) {
	old, young := time.Unix(1000, 0), time.Unix(5000, 0)
	s := &Snapshot{
		Layers: []Layer{
			{ID: "base", Created: old}, {ID: "mid", Parent: "base", Created: old}, {ID: "top", Parent: "mid", Created: old},
			{ID: "mapped", Parent: "base", Created: old},
			{ID: "ctrbase", Created: old}, {ID: "ctr", Parent: "ctrbase", Created: old},
			// o1 ← o2 ← o3, o1 ← o4: an orphan tree, removable leaves first.
			{ID: "o1", Created: old}, {ID: "o2", Parent: "o1", Created: old}, {ID: "o3", Parent: "o2", Created: old}, {ID: "o4", Parent: "o1", Created: old},
			// p1 ← p2 (young): the young leaf keeps its parent.
			{ID: "p1", Created: old}, {ID: "p2", Parent: "p1", Created: young},
		},
		Images: []Image{
			{ID: "img", TopLayer: "top", MappedTopLayers: []string{"mapped"}},
			{ID: "broken", TopLayer: "missing"},
		},
		Containers: []Container{{ID: "c", LayerID: "ctr"}},
	}
	g := NewGraph(s)
	for _, tc := range []struct {
		img  int
		want []string
	}{
		{0, []string{"top", "mid", "base", "mapped"}},
		{1, []string{"missing"}},
	} {
		if got := g.Chain(&s.Images[tc.img]); !slices.Equal(got, tc.want) {
			t.Errorf("Chain(%s) = %v, want %v", s.Images[tc.img].ID, got, tc.want)
		}
	}
	for id, want := range map[string][2]bool{ // {Reachable, ImageReachable}
		"base": {true, true}, "mapped": {true, true}, "missing": {true, true},
		"ctr": {true, false}, "ctrbase": {true, false},
		"o1": {false, false}, "p2": {false, false},
	} {
		if got := [2]bool{g.Reachable(id), g.ImageReachable(id)}; got != want {
			t.Errorf("%s: reachable, by an image = %v, want %v", id, got, want)
		}
	}
	var got []string
	for _, l := range g.Orphans(func(l *Layer) bool { return l.Created.Equal(old) }) {
		got = append(got, l.ID)
	}
	if want := []string{"o3", "o2", "o4", "o1"}; !slices.Equal(got, want) {
		t.Errorf("Orphans = %v, want %v (leaves first; p1 stays under young p2)", got, want)
	}
	if n := len(g.Orphans(func(*Layer) bool { return false })); n != 0 {
		t.Errorf("no eligible layer: %d orphans", n)
	}
}

// TestHistoryNeeded: only the nameless images whose class the history
// decides (no image on their top layer, a peer sharing it), with their
// peers, need their configs read.
func TestHistoryNeeded(t *testing.T) {
	s := &Snapshot{
		Layers: []Layer{{ID: "s1"}, {ID: "l1"}, {ID: "l2", Parent: "l1"}, {ID: "u1"}},
		Images: []Image{
			{ID: "a", TopLayer: "s1"}, {ID: "b", Names: []string{"localhost/b:1"}, TopLayer: "s1"}, // shared top: both
			{ID: "parent", TopLayer: "l1"}, {ID: "parentpeer", TopLayer: "l1"}, {ID: "child", TopLayer: "l2"}, // l1 has a child image: no
			{ID: "alone", TopLayer: "u1"},                                              // no peer: no
			{ID: "named1", Names: []string{"x"}}, {ID: "named2", Names: []string{"y"}}, // names only: no
		},
	}
	if got, want := HistoryNeeded(s), []int{0, 1}; !slices.Equal(got, want) {
		t.Errorf("HistoryNeeded = %v, want %v", got, want)
	}
}
