package layergraph

import "sort"

// Graph is the layer graph of a snapshot: which layer hangs from which, and
// which images and containers hang from the layers. It answers the
// questions df, images and prune all ask — which layers are reachable, which
// nameless images are dangling and which intermediate, what an image's
// layers are, which orphans can go and in which order — with one rule each;
// Simulation (simulate.go) replays deletions on the same snapshot. It is
// pure and read-only.
type Graph struct {
	layers map[string]*Layer
	shared []SharedInode
	// reachable: from an image or a container; imageReachable: from an
	// image.
	reachable      map[string]bool
	imageReachable map[string]bool
	childImages    map[string]bool
}

// NewGraph indexes a snapshot. The snapshot must not change afterwards.
func NewGraph(s *Snapshot) *Graph {
	g := &Graph{layers: make(map[string]*Layer, len(s.Layers)), shared: s.Shared}
	for i := range s.Layers {
		g.layers[s.Layers[i].ID] = &s.Layers[i]
	}
	g.imageReachable = make(map[string]bool, len(s.Layers))
	for i := range s.Images {
		for _, top := range tops(&s.Images[i]) {
			g.mark(g.imageReachable, top)
		}
	}
	g.reachable = make(map[string]bool, len(s.Layers))
	for id := range g.imageReachable {
		g.reachable[id] = true
	}
	for _, c := range s.Containers {
		g.mark(g.reachable, c.LayerID)
	}
	g.childImages = childImages(s, g.layers)
	return g
}

// tops are the layers an image references directly: its top layer, then
// its mapped top layers.
func tops(img *Image) []string {
	return append([]string{img.TopLayer}, img.MappedTopLayers...)
}

// mark sets the layer and its ancestors in reach.
func (g *Graph) mark(reach map[string]bool, id string) {
	for id != "" && !reach[id] {
		reach[id] = true
		l, ok := g.layers[id]
		if !ok {
			return
		}
		id = l.Parent
	}
}

// Layer returns the layer with this ID.
func (g *Graph) Layer(id string) (*Layer, bool) {
	l, ok := g.layers[id]
	return l, ok
}

// Reachable reports whether an image (its top or a mapped top layer, or an
// ancestor of one) or a container (its layer or an ancestor) hangs from the
// layer. A layer that is not reachable is an orphan.
func (g *Graph) Reachable(layerID string) bool { return g.reachable[layerID] }

// ImageReachable reports whether an image (its top or a mapped top layer,
// or an ancestor of one) hangs from the layer; containers do not count.
func (g *Graph) ImageReachable(layerID string) bool { return g.imageReachable[layerID] }

// Intermediate reports whether the image is an intermediate image: it has no
// names and another image is its child (see childImages), as podman's
// `images` hides without -a.
func (g *Graph) Intermediate(img *Image) bool {
	return len(img.Names) == 0 && g.childImages[img.ID]
}

// Dangling reports whether the image is dangling: it has no names and no
// child image (podman's dangling=true filter).
func (g *Graph) Dangling(img *Image) bool {
	return len(img.Names) == 0 && !g.childImages[img.ID]
}

// Chain returns the layers of the image's chains — its top and mapped top
// layers down to their bases — each once, top layer's chain first. A
// missing layer ends its chain (it is listed: the image references it).
func (g *Graph) Chain(img *Image) []string {
	var out []string
	seen := make(map[string]bool, 8)
	for _, id := range tops(img) {
		for id != "" && !seen[id] {
			seen[id] = true
			out = append(out, id)
			l, ok := g.layers[id]
			if !ok {
				break
			}
			id = l.Parent
		}
	}
	return out
}

// ImageBytes is store.ImageSize on disk: the image data plus every present
// layer of its chains once, each hard-linked inode once.
func (g *Graph) ImageBytes(img *Image) int64 {
	size := img.DataBytes()
	var inodes map[int]bool
	for _, id := range g.Chain(img) {
		l, ok := g.layers[id]
		if !ok {
			continue
		}
		size += l.Bytes()
		for _, k := range l.Shared {
			if inodes == nil {
				inodes = map[int]bool{}
			}
			if !inodes[k] {
				inodes[k] = true
				size += g.shared[k].Bytes
			}
		}
	}
	return size
}

// Orphans returns the orphan layers (no image nor container reaches them)
// that may go: each one eligible says may, and none with a descendant that
// stays (DeleteLayer refuses a layer with children, and a kept child keeps
// its parent). They are ordered leaves first — deepest in the orphan forest
// first, then by ID — the order in which they can be deleted one by one.
func (g *Graph) Orphans(eligible func(*Layer) bool) []*Layer {
	cand := map[string]bool{}
	for id, l := range g.layers {
		if !g.reachable[id] && eligible(l) {
			cand[id] = true
		}
	}
	// A candidate with a child that stays must stay too (and so on up).
	keepUp := func(id string) {
		for id != "" && cand[id] {
			delete(cand, id)
			id = g.layers[id].Parent
		}
	}
	for id, l := range g.layers {
		if !cand[id] && l.Parent != "" && cand[l.Parent] {
			keepUp(l.Parent)
		}
	}
	depth := make(map[string]int, len(cand))
	ids := make([]string, 0, len(cand))
	for id := range cand {
		d := 0
		for p := g.layers[id].Parent; p != "" && cand[p]; p = g.layers[p].Parent {
			d++
		}
		depth[id] = d
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if depth[ids[i]] != depth[ids[j]] {
			return depth[ids[i]] > depth[ids[j]]
		}
		return ids[i] < ids[j]
	})
	out := make([]*Layer, len(ids))
	for i, id := range ids {
		out[i] = g.layers[id]
	}
	return out
}

// childImages reports which images have children, as libimage's layer tree
// decides: B is a child of A when B's top layer's parent is A's top layer,
// or both share the top layer (or both have none) and B's history is longer
// (B added only empty layers, e.g. ENV or LABEL, on top of A).
func childImages(s *Snapshot, layers map[string]*Layer) map[string]bool {
	byTop := imagesByTop(s)
	has := make(map[string]bool)
	for i := range s.Images {
		b := &s.Images[i]
		if b.TopLayer != "" {
			if l, ok := layers[b.TopLayer]; ok && l.Parent != "" {
				for _, j := range byTop[l.Parent] {
					has[s.Images[j].ID] = true
				}
			}
		}
		for _, j := range byTop[b.TopLayer] {
			a := &s.Images[j]
			if a.ID != b.ID && b.HistoryLen > a.HistoryLen {
				has[a.ID] = true
			}
		}
	}
	return has
}

// imagesByTop indexes the images (Snapshot.Images indexes) by top layer.
func imagesByTop(s *Snapshot) map[string][]int {
	byTop := make(map[string][]int, len(s.Images))
	for i := range s.Images {
		byTop[s.Images[i].TopLayer] = append(byTop[s.Images[i].TopLayer], i)
	}
	return byTop
}

// HistoryNeeded returns the images (Snapshot.Images indexes, in order)
// whose HistoryLen the dangling/intermediate rule reads: a nameless image
// that no image sits on by layer is dangling unless an image sharing its
// top layer has a longer history, so it and those peers. The other images'
// class does not depend on history, so a collector reads only these
// configs.
func HistoryNeeded(s *Snapshot) []int {
	parentOf := make(map[string]string, len(s.Layers))
	for _, l := range s.Layers {
		parentOf[l.ID] = l.Parent
	}
	byTop := imagesByTop(s)
	hasChildLayer := make(map[string]bool, len(s.Images))
	for i := range s.Images {
		top := s.Images[i].TopLayer
		if p := parentOf[top]; top != "" && p != "" {
			hasChildLayer[p] = true
		}
	}
	read := make(map[int]bool)
	var idx []int
	for i := range s.Images {
		img := &s.Images[i]
		if len(img.Names) > 0 || (img.TopLayer != "" && hasChildLayer[img.TopLayer]) || len(byTop[img.TopLayer]) < 2 {
			continue
		}
		for _, j := range byTop[img.TopLayer] {
			if !read[j] {
				read[j] = true
				idx = append(idx, j)
			}
		}
	}
	return idx
}
