package inventory

import (
	"sort"
	"time"

	"github.com/stowage/stowage/jobs/shared/layergraph"
)

// Accounting is the exact disk accounting of a snapshot (`stowage df`).
type Accounting struct {
	Taken     time.Time `json:"taken"`
	GraphRoot string    `json:"graphroot"`
	Driver    string    `json:"driver"`
	// SizeBasis says what the byte figures are: "allocated" (the blocks
	// the files take on the filesystem, st_blocks × 512, each inode once:
	// what deleting gives back, as statfs shows), or "recorded" (the store's
	// diff sizes, for drivers whose directories stowage does not walk), or
	// "mixed" when some items could not be measured.
	SizeBasis string `json:"size_basis"`
	// TotalBytes is what the writable store holds on disk: layers
	// (container layers included), image data and container directories.
	// Additional (read-only) image stores are counted apart, in
	// Images.ReadOnlyBytes.
	TotalBytes int64 `json:"total_bytes"`
	// ReclaimableBytes is what removing every image no container uses
	// would give back to the filesystem (read-only images excluded).
	ReclaimableBytes int64                 `json:"reclaimable_bytes"`
	Images           ImageTotals           `json:"images"`
	Layers           LayerTotals           `json:"layers"`
	Containers       ContainerTotals       `json:"containers"`
	Filesystem       layergraph.Filesystem `json:"filesystem"`
	// PerImage lists every image (`stowage images`), newest first.
	PerImage []ImageUsage `json:"-"`
}

// ImageTotals summarises the images.
type ImageTotals struct {
	Count             int `json:"count"`
	InUseCount        int `json:"in_use_count"`
	DanglingCount     int `json:"dangling_count"`
	IntermediateCount int `json:"intermediate_count"`
	ReadOnlyCount     int `json:"read_only_count"`
	// BigDataBytes is the writable images' data (manifests, configs,
	// signatures) on disk.
	BigDataBytes int64 `json:"big_data_bytes"`
	// Bytes is what the images take: TotalBytes without the containers
	// (their writable layers and directories).
	Bytes int64 `json:"bytes"`
	// ReadOnlyBytes is what the additional, read-only image stores hold
	// for this store's view (layers and image data): never reclaimable,
	// not part of TotalBytes.
	ReadOnlyBytes int64 `json:"read_only_bytes"`
}

// LayerTotals summarises the layers.
type LayerTotals struct {
	Count int `json:"count"`
	// Bytes is the writable layers' disk bytes, hard-linked inodes once.
	Bytes int64 `json:"bytes"`
	// HardLinkedBytes is the part of Bytes in inodes several layers share
	// (use_hard_links, zstd:chunked): freed when the last of them goes.
	HardLinkedBytes int64 `json:"hard_linked_bytes"`
	// Orphans are layers referenced by no image (top, mapped top or an
	// ancestor of one) and no container (its layer or an ancestor).
	OrphanCount int      `json:"orphan_count"`
	OrphanBytes int64    `json:"orphan_bytes"`
	Orphans     []string `json:"orphans"`
	// UnknownSizeCount counts layers whose size could not be determined
	// (counted as 0).
	UnknownSizeCount int `json:"unknown_size_count"`
}

// ContainerTotals summarises the containers.
type ContainerTotals struct {
	Count int `json:"count"`
	// Bytes is the containers' writable layers and directories on disk
	// (podman system df's Containers row), measured at every run.
	Bytes int64 `json:"bytes"`
}

// ImageUsage is one image's accounting (`stowage images --format json`).
type ImageUsage struct {
	ID      string   `json:"id"`
	Names   []string `json:"names"`
	Digest  string   `json:"digest"`
	Digests []string `json:"digests"`
	// SizeBytes is the full size on disk: every layer of the chain (each
	// hard-linked inode once) + the image data.
	SizeBytes int64 `json:"size_bytes"`
	// UniqueBytes is what removing this image alone would free now. For an
	// image in use, it is what would be freed once its containers are gone.
	UniqueBytes int64 `json:"unique_bytes"`
	// SharedBytes = SizeBytes − UniqueBytes.
	SharedBytes  int64     `json:"shared_bytes"`
	Containers   int       `json:"containers"`
	Dangling     bool      `json:"dangling"`
	Intermediate bool      `json:"intermediate"`
	ReadOnly     bool      `json:"read_only"`
	Created      time.Time `json:"created"`
	OS           string    `json:"os,omitempty"`
	Architecture string    `json:"architecture,omitempty"`
	Variant      string    `json:"variant,omitempty"`
}

// Account computes the exact accounting of a snapshot. It is pure.
func Account(s *layergraph.Snapshot) *Accounting {
	a := &Accounting{Taken: s.Taken, GraphRoot: s.GraphRoot, Driver: s.Driver, Filesystem: s.FS}
	g := layergraph.NewGraph(s)
	containerLayers := make(map[string]struct{}, len(s.Containers))
	for _, c := range s.Containers {
		containerLayers[c.LayerID] = struct{}{}
		a.Containers.Bytes += c.DiskBytes
	}
	// A shared inode is the writable store's when any writable layer holds it.
	sharedWritable := make([]bool, len(s.Shared))
	measured := 0
	for i := range s.Layers {
		l := &s.Layers[i]
		if l.Measured {
			measured++
		} else if l.UncompressedSize < 0 {
			a.Layers.UnknownSizeCount++
		}
		if l.ReadOnly {
			a.Images.ReadOnlyBytes += l.Bytes()
			continue
		}
		a.Layers.Bytes += l.Bytes()
		if _, ok := containerLayers[l.ID]; ok {
			a.Containers.Bytes += l.Bytes()
		}
		for _, k := range l.Shared {
			sharedWritable[k] = true
		}
	}
	for k, si := range s.Shared {
		if sharedWritable[k] {
			a.Layers.HardLinkedBytes += si.Bytes
		} else {
			a.Images.ReadOnlyBytes += si.Bytes
		}
	}
	a.Layers.Bytes += a.Layers.HardLinkedBytes
	switch {
	case measured == len(s.Layers) && measured > 0:
		a.SizeBasis = "allocated"
	case measured == 0 && len(s.Layers) > 0:
		a.SizeBasis = "recorded"
	case len(s.Layers) == 0:
		a.SizeBasis = "allocated"
	default:
		a.SizeBasis = "mixed"
	}
	a.Layers.Count = len(s.Layers)
	a.Containers.Count = len(s.Containers)

	used := make(map[string]int, len(s.Containers))
	for _, c := range s.Containers {
		used[c.ImageID]++
	}

	for i := range s.Layers {
		l := &s.Layers[i]
		if !g.Reachable(l.ID) {
			a.Layers.Orphans = append(a.Layers.Orphans, l.ID)
			a.Layers.OrphanBytes += l.Bytes()
		}
	}
	a.Layers.OrphanCount = len(a.Layers.Orphans)
	if a.Layers.Orphans == nil {
		a.Layers.Orphans = []string{}
	}

	sim := layergraph.NewSimulation(s)
	// For images in use, unique bytes are measured as if their containers
	// were gone: a model without containers.
	var free *layergraph.Simulation
	if len(s.Containers) > 0 {
		free = layergraph.NewSimulation(withoutContainers(s))
	}
	var unused []string
	a.PerImage = make([]ImageUsage, 0, len(s.Images))
	for i := range s.Images {
		img := &s.Images[i]
		u := ImageUsage{
			ID: img.ID, Names: nonNil(img.Names), Digest: img.Digest, Digests: nonNil(img.Digests),
			SizeBytes: g.ImageBytes(img), Containers: used[img.ID], ReadOnly: img.ReadOnly,
			Created: img.Created, OS: img.OS, Architecture: img.Architecture, Variant: img.Variant,
		}
		u.Intermediate, u.Dangling = g.Intermediate(img), g.Dangling(img)
		switch {
		case u.Containers > 0 && free != nil:
			u.UniqueBytes = free.Cost(img.ID)
		default:
			u.UniqueBytes = sim.Cost(img.ID)
		}
		u.SharedBytes = u.SizeBytes - u.UniqueBytes
		if img.ReadOnly {
			a.Images.ReadOnlyBytes += img.DataBytes()
		} else {
			a.Images.BigDataBytes += img.DataBytes()
		}
		if u.Containers > 0 {
			a.Images.InUseCount++
		}
		if u.Dangling {
			a.Images.DanglingCount++
		}
		if u.Intermediate {
			a.Images.IntermediateCount++
		}
		if u.ReadOnly {
			a.Images.ReadOnlyCount++
		}
		if u.Containers == 0 && !u.ReadOnly {
			unused = append(unused, img.ID)
		}
		a.PerImage = append(a.PerImage, u)
	}
	a.Images.Count = len(s.Images)
	var containerDirs int64
	for _, c := range s.Containers {
		containerDirs += c.DiskBytes
	}
	a.TotalBytes = a.Layers.Bytes + a.Images.BigDataBytes + containerDirs
	a.Images.Bytes = a.TotalBytes - a.Containers.Bytes
	for _, id := range unused {
		a.ReclaimableBytes += sim.Remove(id).Bytes
	}
	sort.SliceStable(a.PerImage, func(i, j int) bool { return a.PerImage[i].Created.After(a.PerImage[j].Created) })
	return a
}

// withoutContainers is s with no containers and no container layers.
func withoutContainers(s *layergraph.Snapshot) *layergraph.Snapshot {
	cl := make(map[string]struct{}, len(s.Containers))
	for _, c := range s.Containers {
		cl[c.LayerID] = struct{}{}
	}
	out := *s
	out.Containers = nil
	out.Layers = make([]layergraph.Layer, 0, len(s.Layers))
	for _, l := range s.Layers {
		if _, ok := cl[l.ID]; !ok {
			out.Layers = append(out.Layers, l)
		}
	}
	return &out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// StoreBytes is Accounting.TotalBytes without the rest of the accounting:
// what the writable store holds on disk (layers with each hard-linked inode
// once, image data, container directories; read-only stores excluded).
func StoreBytes(s *layergraph.Snapshot) int64 {
	var n int64
	counted := make([]bool, len(s.Shared))
	for i := range s.Layers {
		l := &s.Layers[i]
		if l.ReadOnly {
			continue
		}
		n += l.Bytes()
		for _, k := range l.Shared {
			if !counted[k] {
				counted[k] = true
				n += s.Shared[k].Bytes
			}
		}
	}
	for i := range s.Images {
		if !s.Images[i].ReadOnly {
			n += s.Images[i].DataBytes()
		}
	}
	for _, c := range s.Containers {
		n += c.DiskBytes
	}
	return n
}
