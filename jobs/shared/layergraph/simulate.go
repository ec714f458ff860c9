package layergraph

// This file replays go.podman.io/storage's store.DeleteImage in memory.
// DeleteImage(id) refuses an image a container uses; otherwise it removes
// the image's mapped top layers unconditionally and then walks from the top
// layer down the parent chain, removing each layer until it reaches one that
//   - is a container's layer (containerStore.Exists also matches container
//     IDs and names),
//   - is the top or a mapped top layer of another image, or
//   - has a child layer that is not being removed (for the top layer, the
//     children of the mapped top layers count too).
// One deliberate difference: a layer that is missing or lives in a read-only
// store stops the walk (DeleteImage would list it and then fail to delete
// it), so no bytes are promised that cannot be freed.
// Simulation keeps reference counts so that each Cost or Remove costs time
// proportional to the chain it walks, not to the size of the store.

// Removal is what removing one image (or a set) frees: the layers
// DeleteImage would delete, in its order, and the bytes the filesystem gets
// back (the layers' and the image data's disk bytes, plus every hard-linked
// inode whose last layer goes; recorded sizes where nothing was measured).
type Removal struct {
	ImageID string   `json:"image_id,omitempty"`
	Layers  []string `json:"layers"`
	Bytes   int64    `json:"bytes"`
}

type simLayer struct {
	parent   string
	size     int64
	shared   []int // Snapshot.Shared indexes
	children int   // present child layers
	topRefs  int   // present images using it as top or mapped top layer
	readOnly bool  // in a read-only store: never deleted
}

type simImage struct {
	top        string
	mapped     []string
	bigData    int64
	containers int
	readOnly   bool
}

// Simulation is an incremental in-memory model of a store's images and
// layers under DeleteImage. It is not safe for concurrent use.
type Simulation struct {
	layers map[string]*simLayer
	images map[string]*simImage
	// containerKeys are the layer IDs, container IDs and names that
	// containerStore.Exists would find.
	containerKeys map[string]struct{}
	// sharedLeft counts, per shared inode, the present layers holding it
	// (one more for a pinned inode: it never reaches 0).
	sharedLeft  []int
	sharedBytes []int64
}

// NewSimulation builds the model from a snapshot.
func NewSimulation(s *Snapshot) *Simulation {
	sim := &Simulation{
		layers:        make(map[string]*simLayer, len(s.Layers)),
		images:        make(map[string]*simImage, len(s.Images)),
		containerKeys: make(map[string]struct{}, 3*len(s.Containers)),
	}
	sim.sharedLeft = make([]int, len(s.Shared))
	sim.sharedBytes = make([]int64, len(s.Shared))
	for i, si := range s.Shared {
		sim.sharedBytes[i] = si.Bytes
		if si.Pinned {
			sim.sharedLeft[i]++
		}
	}
	for i := range s.Layers {
		l := &s.Layers[i]
		sl := &simLayer{parent: l.Parent, size: l.Bytes(), readOnly: l.ReadOnly}
		for _, k := range l.Shared {
			if k >= 0 && k < len(s.Shared) {
				sl.shared = append(sl.shared, k)
				sim.sharedLeft[k]++
				if l.ReadOnly {
					sim.sharedLeft[k]++ // a read-only layer never goes
				}
			}
		}
		sim.layers[l.ID] = sl
	}
	for _, l := range s.Layers {
		if p, ok := sim.layers[l.Parent]; ok && l.Parent != "" {
			p.children++
		}
	}
	for _, c := range s.Containers {
		for _, k := range append([]string{c.ID, c.LayerID}, c.Names...) {
			if k != "" {
				sim.containerKeys[k] = struct{}{}
			}
		}
	}
	for i := range s.Images {
		img := &s.Images[i]
		si := &simImage{top: img.TopLayer, mapped: img.MappedTopLayers, bigData: img.DataBytes(), readOnly: img.ReadOnly}
		sim.images[img.ID] = si
		for _, l := range si.refs() {
			if sl, ok := sim.layers[l]; ok {
				sl.topRefs++
			}
		}
	}
	for _, c := range s.Containers {
		if si, ok := sim.images[c.ImageID]; ok {
			si.containers++
		}
	}
	return sim
}

// refs are the distinct layers an image references directly.
func (si *simImage) refs() []string {
	out := make([]string, 0, 1+len(si.mapped))
	if si.top != "" {
		out = append(out, si.top)
	}
	for _, m := range si.mapped {
		if m != "" && m != si.top && !contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Has reports whether the image is still present in the model.
func (sim *Simulation) Has(imageID string) bool {
	_, ok := sim.images[imageID]
	return ok
}

// InUse reports whether a container uses the image: DeleteImage refuses it
// (ErrImageUsedByContainer), so Cost is 0 and Remove does nothing.
func (sim *Simulation) InUse(imageID string) bool {
	si, ok := sim.images[imageID]
	return ok && si.containers > 0
}

// Cost returns the bytes that removing the image alone would free now; 0
// for an unknown, read-only or in-use image.
func (sim *Simulation) Cost(imageID string) int64 {
	return sim.walk(imageID).Bytes
}

// Remove applies the removal of one image to the model and returns what it
// freed. An unknown, read-only or in-use image is left alone (empty Removal).
func (sim *Simulation) Remove(imageID string) Removal {
	r := sim.walk(imageID)
	si, ok := sim.images[imageID]
	if !ok || si.readOnly || si.containers > 0 {
		return r
	}
	sim.Apply(imageID, r.Layers)
	return r
}

// Apply records a deletion that happened (or will): the image (if it is in
// the model; "" for none) and exactly the given layers. It returns the bytes
// that frees, shared inodes included once their last layer is gone. The
// prune executor uses it with the layers DeleteImage and DeleteLayer really
// removed.
func (sim *Simulation) Apply(imageID string, layers []string) int64 {
	var freed int64
	if si, ok := sim.images[imageID]; ok && imageID != "" {
		freed += si.bigData
		for _, l := range si.refs() {
			if sl, ok := sim.layers[l]; ok {
				sl.topRefs--
			}
		}
		delete(sim.images, imageID)
	}
	for _, id := range layers {
		sl, ok := sim.layers[id]
		if !ok {
			continue
		}
		freed += sl.size
		for _, k := range sl.shared {
			if sim.sharedLeft[k]--; sim.sharedLeft[k] == 0 {
				freed += sim.sharedBytes[k]
			}
		}
		if p, ok := sim.layers[sl.parent]; ok && sl.parent != "" {
			p.children--
		}
		delete(sim.layers, id)
	}
	return freed
}

// walk replays DeleteImage's dry run without changing the model.
func (sim *Simulation) walk(imageID string) Removal {
	r := Removal{ImageID: imageID, Layers: []string{}}
	si, ok := sim.images[imageID]
	if !ok || si.readOnly || si.containers > 0 {
		return r
	}
	r.Bytes = si.bigData
	slated := make(map[string]struct{}, 8)
	add := func(id string) {
		r.Layers = append(r.Layers, id)
		slated[id] = struct{}{}
		if sl, ok := sim.layers[id]; ok {
			r.Bytes += sl.size
		}
	}
	for _, m := range si.mapped {
		if _, ok := sim.layers[m]; ok && m != "" {
			add(m)
		}
	}
	// slatedChildren counts the slated layers whose parent is id.
	slatedChildren := func(id string) int {
		n := 0
		for s := range slated {
			if sl, ok := sim.layers[s]; ok && sl.parent == id {
				n++
			}
		}
		return n
	}
	self := si.refs()
	for layer := si.top; layer != ""; {
		sl, ok := sim.layers[layer]
		// A missing layer cannot be deleted and a read-only one must not
		// be: stop there rather than count bytes that will not come back.
		if !ok || sl.readOnly {
			break
		}
		if _, used := sim.containerKeys[layer]; used {
			break
		}
		others := sl.topRefs
		if contains(self, layer) {
			others--
		}
		if others > 0 {
			break
		}
		busy := sl.children-slatedChildren(layer) > 0
		if !busy && layer == si.top {
			for _, m := range si.mapped {
				if ml, ok := sim.layers[m]; ok && ml.children-slatedChildren(m) > 0 {
					busy = true
					break
				}
			}
		}
		if busy {
			break
		}
		if _, dup := slated[layer]; dup {
			break // a cycle or a mapped layer met again: never count twice
		}
		add(layer)
		layer = sl.parent
	}
	r.Bytes += sim.sharedFreed(r.Layers)
	return r
}

// sharedFreed is the bytes of the shared inodes whose every remaining layer
// is among layers.
func (sim *Simulation) sharedFreed(layers []string) int64 {
	var hits map[int]int
	for _, id := range layers {
		sl, ok := sim.layers[id]
		if !ok || len(sl.shared) == 0 {
			continue
		}
		if hits == nil {
			hits = map[int]int{}
		}
		for _, k := range sl.shared {
			hits[k]++
		}
	}
	var n int64
	for k, h := range hits {
		if h == sim.sharedLeft[k] {
			n += sim.sharedBytes[k]
		}
	}
	return n
}

// FreedBy returns what removing every image in ids, in that order, would
// free. Images used by containers, read-only or unknown free nothing.
func FreedBy(s *Snapshot, ids []string) Removal {
	sim := NewSimulation(s)
	total := Removal{Layers: []string{}}
	for _, id := range ids {
		r := sim.Remove(id)
		total.Layers = append(total.Layers, r.Layers...)
		total.Bytes += r.Bytes
	}
	return total
}
