package layergraph

import (
	"fmt"
	"reflect"
	"testing"
)

// snap builds a snapshot from compact descriptions: layers "ID:PARENT:SIZE",
// images "ID:TOP:BIGDATA[:MAPPED...]", containers "ID:IMAGE:LAYER".
func snap(layers, images, containers []string) *Snapshot {
	s := &Snapshot{}
	for _, l := range layers {
		var id, parent string
		var size int64
		ro := false
		f := split(l)
		id, parent = f[0], f[1]
		fmt.Sscan(f[2], &size)
		if len(f) > 3 && f[3] == "ro" {
			ro = true
		}
		s.Layers = append(s.Layers, Layer{ID: id, Parent: parent, UncompressedSize: size, ReadOnly: ro})
	}
	for _, i := range images {
		f := split(i)
		var bd int64
		fmt.Sscan(f[2], &bd)
		s.Images = append(s.Images, Image{ID: f[0], TopLayer: f[1], BigDataBytes: bd, MappedTopLayers: f[3:]})
	}
	for _, c := range containers {
		f := split(c)
		s.Containers = append(s.Containers, Container{ID: f[0], ImageID: f[1], LayerID: f[2]})
	}
	return s
}

func split(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ':' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestSimulationTable(t *testing.T) {
	type step struct {
		image  string
		layers []string
		bytes  int64
	}
	tests := []struct {
		name                       string
		layers, images, containers []string
		steps                      []step
	}{
		{
			name:   "chain stops at another image's top layer",
			layers: []string{"l1::100", "l2:l1:20", "l3:l2:3"},
			images: []string{"a:l3:1", "b:l1:2"},
			steps: []step{
				{"b", []string{}, 2}, // l1 has a child
				{"a", []string{"l3", "l2", "l1"}, 1 + 3 + 20 + 100},
			},
		},
		{
			name:   "other image's top stops the walk",
			layers: []string{"l1::100", "l2:l1:20", "l3:l2:3"},
			images: []string{"a:l3:1", "b:l1:2"},
			steps: []step{
				{"a", []string{"l3", "l2"}, 1 + 3 + 20},
				{"b", []string{"l1"}, 2 + 100},
			},
		},
		{
			name:       "in use: refused; a container's layer keeps its parents",
			layers:     []string{"l1::100", "l2:l1:20", "c1:l1:0"},
			images:     []string{"a:l2:1", "b:l1:2"},
			containers: []string{"ctr:b:c1"},
			steps: []step{
				{"b", []string{}, 0},
				{"a", []string{"l2"}, 1 + 20},
				{"b", []string{}, 0},
			},
		},
		{
			name:       "a container layer in the chain (image removed under it) stops the walk",
			layers:     []string{"l1::100", "c1:l1:7", "l2:c1:20"},
			images:     []string{"a:l2:1"},
			containers: []string{"ctr:gone:c1"},
			steps:      []step{{"a", []string{"l2"}, 1 + 20}},
		},
		{
			name:   "same top layer: the last image frees it",
			layers: []string{"l1::100"},
			images: []string{"a:l1:1", "b:l1:2"},
			steps: []step{
				{"a", []string{}, 1},
				{"b", []string{"l1"}, 2 + 100},
			},
		},
		{
			name:   "mapped top layers go first and count as slated children",
			layers: []string{"l1::100", "l2:l1:20", "m2:l1:20"},
			images: []string{"a:l2:1:m2"},
			steps:  []step{{"a", []string{"m2", "l2", "l1"}, 1 + 20 + 20 + 100}},
		},
		{
			name:   "a mapped layer with a foreign child keeps the top layer",
			layers: []string{"l1::100", "l2:l1:20", "m2:l1:20", "x:m2:5"},
			images: []string{"a:l2:1:m2", "b:x:2"},
			steps:  []step{{"a", []string{"m2"}, 1 + 20}},
		},
		{
			name:   "orphan parents below go with the image",
			layers: []string{"o1::50", "o2:o1:60", "l3:o2:7"},
			images: []string{"a:l3:1"},
			steps:  []step{{"a", []string{"l3", "o2", "o1"}, 1 + 7 + 60 + 50}},
		},
		{
			name:   "read-only layers are never counted",
			layers: []string{"r1::100:ro", "l2:r1:20"},
			images: []string{"a:l2:1"},
			steps:  []step{{"a", []string{"l2"}, 1 + 20}},
		},
		{
			name:   "unknown image and an image without layers",
			layers: []string{"l1::100"},
			images: []string{"a:l1:1", "e::9"},
			steps: []step{
				{"nope", []string{}, 0},
				{"e", []string{}, 9},
				{"e", []string{}, 0}, // already gone
			},
		},
		{
			name:   "sibling branch keeps the shared parent until both go",
			layers: []string{"l1::100", "a1:l1:10", "b1:l1:11"},
			images: []string{"a:a1:1", "b:b1:2"},
			steps: []step{
				{"a", []string{"a1"}, 1 + 10},
				{"b", []string{"b1", "l1"}, 2 + 11 + 100},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := snap(tt.layers, tt.images, tt.containers)
			sim := NewSimulation(s)
			for i, st := range tt.steps {
				cost := sim.Cost(st.image)
				r := sim.Remove(st.image)
				if !reflect.DeepEqual(r.Layers, st.layers) || r.Bytes != st.bytes || cost != r.Bytes {
					t.Fatalf("step %d (%s): removed %v, %d bytes (cost %d); want %v, %d", i, st.image, r.Layers, r.Bytes, cost, st.layers, st.bytes)
				}
			}
		})
	}
}

func TestFreedByIsOrderIndependent(t *testing.T) {
	s := snap(
		[]string{"l1::100", "l2:l1:20", "l3:l2:3", "b1:l1:11", "c1:l3:0"},
		[]string{"a:l3:1", "b:l1:2", "c:b1:4", "d:l2:8"},
		[]string{"ctr:a:c1"},
	)
	want := FreedBy(s, []string{"b", "c", "d"}).Bytes
	if want != 2+4+11+8 { // l1, l2 stay under the container's image a
		t.Fatalf("freed %d", want)
	}
	for _, order := range [][]string{{"d", "c", "b"}, {"c", "b", "d"}, {"b", "d", "c", "a"}} {
		if got := FreedBy(s, order).Bytes; got != want {
			t.Errorf("order %v frees %d, want %d", order, got, want)
		}
	}
}

// synthetic builds a store of n images over shared bases: 100 base chains
// of 10 layers; each image adds 2 layers on a random base layer.
func synthetic(n int) *Snapshot {
	s := &Snapshot{}
	for b := 0; b < 100; b++ {
		parent := ""
		for d := 0; d < 10; d++ {
			id := fmt.Sprintf("b%d-%d", b, d)
			s.Layers = append(s.Layers, Layer{ID: id, Parent: parent, UncompressedSize: 1000})
			parent = id
		}
		s.Images = append(s.Images, Image{ID: fmt.Sprintf("base%d", b), TopLayer: parent, BigDataBytes: 10})
	}
	for i := 0; len(s.Images) < n; i++ {
		parent := fmt.Sprintf("b%d-%d", (i*7)%100, (i*3)%10)
		for d := 0; d < 2; d++ {
			id := fmt.Sprintf("i%d-%d", i, d)
			s.Layers = append(s.Layers, Layer{ID: id, Parent: parent, UncompressedSize: 500})
			parent = id
		}
		s.Images = append(s.Images, Image{ID: fmt.Sprintf("img%d", i), TopLayer: parent, BigDataBytes: 10})
		if i%50 == 0 {
			s.Containers = append(s.Containers, Container{ID: fmt.Sprintf("c%d", i), ImageID: fmt.Sprintf("img%d", i), LayerID: fmt.Sprintf("cl%d", i)})
			s.Layers = append(s.Layers, Layer{ID: fmt.Sprintf("cl%d", i), Parent: parent})
		}
	}
	return s
}

// BenchmarkGreedy is what a greedy prune planner does on 10,000 images and
// ~21,000 layers: build the model, price every image, remove them all.
func BenchmarkGreedy(b *testing.B) {
	s := synthetic(10_000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sim := NewSimulation(s)
		for _, img := range s.Images {
			sim.Cost(img.ID)
		}
		for _, img := range s.Images {
			sim.Remove(img.ID)
		}
	}
}

// TestSimulationSharedInodes: an inode hard-linked between layers is freed
// by the removal that takes its last present layer, once; a pinned one
// (links outside the store) or one a read-only layer holds never.
func TestSimulationSharedInodes(t *testing.T) {
	s := snap(
		[]string{"base::100", "a:base:10", "b:base:20", "c:base:30", "ro::5:ro", "d:ro:1"},
		[]string{"A:a:1", "B:b:1", "C:c:1", "BASE:base:1", "D:d:1"},
		nil,
	)
	s.Shared = []SharedInode{{Bytes: 1000}, {Bytes: 7000, Pinned: true}, {Bytes: 300}}
	for i := range s.Layers {
		switch s.Layers[i].ID {
		case "a", "b":
			s.Layers[i].Shared = []int{0, 1}
		case "ro", "d":
			s.Layers[i].Shared = []int{2}
		}
	}
	g := NewGraph(s)
	if got := g.ImageBytes(&s.Images[0]); got != 1+10+100+1000+7000 {
		t.Errorf("A's size %d, want its data, layers and both inodes of a", got)
	}
	sim := NewSimulation(s)
	if got := sim.Cost("A"); got != 11 {
		t.Errorf("A alone frees %d, want 11 (b still links the inode)", got)
	}
	if got := sim.Remove("A").Bytes; got != 11 {
		t.Errorf("removing A freed %d", got)
	}
	if got := sim.Cost("B"); got != 21+1000 {
		t.Errorf("B after A frees %d, want 1021 (its last layer; the pinned inode stays)", got)
	}
	if got := sim.Cost("D"); got != 2 {
		t.Errorf("D frees %d, want 2 (the read-only layer keeps the inode)", got)
	}
	if got := FreedBy(s, []string{"A", "B", "C"}).Bytes; got != 11+1021+31 {
		t.Errorf("A, B, C free %d", got)
	}
	if got := FreedBy(s, []string{"B", "A"}).Bytes; got != 11+1021 {
		t.Errorf("B, A free %d", got)
	}
	// Apply (the executor's replay of real deletions) agrees with Remove.
	sim2 := NewSimulation(s)
	if got := sim2.Apply("A", []string{"a"}) + sim2.Apply("B", []string{"b"}); got != 11+1021 {
		t.Errorf("Apply freed %d", got)
	}
}
