package inventory

import (
	"slices"
	"testing"
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
	if a := Account(s); !slices.Equal(a.Layers.Orphans, orphans) {
		t.Fatalf("Account orphans %v, graph %v", a.Layers.Orphans, orphans)
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
	// df and images classify with the same graph.
	for _, u := range Account(s).PerImage {
		img := &images[slices.IndexFunc(images, func(i Image) bool { return i.ID == u.ID })]
		if u.Dangling != g.Dangling(img) || u.Intermediate != g.Intermediate(img) {
			t.Errorf("Account %s: dangling %v intermediate %v, graph %v %v", u.ID, u.Dangling, u.Intermediate, g.Dangling(img), g.Intermediate(img))
		}
	}
}
