package inventory

// Graph is the layer graph of a snapshot: which layer hangs from which, and
// which images and containers hang from the layers. It answers the
// questions df, images and prune all ask — which layers are reachable, which
// nameless images are dangling and which intermediate — with one rule each;
// Simulation (simulate.go) replays deletions on the same snapshot. It is pure
// and read-only.
type Graph struct {
	layers      map[string]*Layer
	reachable   map[string]bool
	childImages map[string]bool
}

// NewGraph indexes a snapshot. The snapshot must not change afterwards.
func NewGraph(s *Snapshot) *Graph {
	g := &Graph{layers: make(map[string]*Layer, len(s.Layers))}
	for i := range s.Layers {
		g.layers[s.Layers[i].ID] = &s.Layers[i]
	}
	g.reachable = reachable(s, g.layers)
	g.childImages = childImages(s, g.layers)
	return g
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

// reachable marks every layer an image or a container hangs from.
func reachable(s *Snapshot, layers map[string]*Layer) map[string]bool {
	reach := make(map[string]bool, len(s.Layers))
	mark := func(id string) {
		for id != "" && !reach[id] {
			reach[id] = true
			l, ok := layers[id]
			if !ok {
				return
			}
			id = l.Parent
		}
	}
	for i := range s.Images {
		mark(s.Images[i].TopLayer)
		for _, m := range s.Images[i].MappedTopLayers {
			mark(m)
		}
	}
	for _, c := range s.Containers {
		mark(c.LayerID)
	}
	return reach
}

// childImages reports which images have children, as libimage's layer tree
// decides: B is a child of A when B's top layer's parent is A's top layer,
// or both share the top layer (or both have none) and B's history is longer
// (B added only empty layers, e.g. ENV or LABEL, on top of A).
func childImages(s *Snapshot, layers map[string]*Layer) map[string]bool {
	byTop := make(map[string][]int, len(s.Images))
	for i := range s.Images {
		byTop[s.Images[i].TopLayer] = append(byTop[s.Images[i].TopLayer], i)
	}
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
