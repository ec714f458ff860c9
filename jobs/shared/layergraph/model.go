// Package layergraph is the one model of a store's layer graph and the
// questions df, images and prune ask of it, with one rule each: a snapshot
// of the store's images, layers, containers and hard-linked inodes
// (model.go), which layers images and containers reach, which nameless
// images are dangling and which intermediate, which layers an image's
// chains hold (Graph), in which order orphan layers can go (OrphanOrder),
// and an in-memory replay of store.DeleteImage (Simulation). It is pure: it
// reads only a Snapshot, does no I/O and links no storage library.
package layergraph

import "time"

// Snapshot is a consistent-enough view of a store at one moment. Planners
// work on it without I/O; executors re-check under the storage locks.
type Snapshot struct {
	Taken      time.Time   `json:"taken"`
	GraphRoot  string      `json:"graphroot"`
	RunRoot    string      `json:"runroot"`
	Driver     string      `json:"driver"`
	Images     []Image     `json:"images"`
	Layers     []Layer     `json:"layers"`
	Containers []Container `json:"containers"`
	// Shared are the inodes hard-linked between layers (overlay's
	// use_hard_links, zstd:chunked partial pulls): each takes its blocks
	// once and frees them only when every layer holding it is gone.
	Shared []SharedInode `json:"shared,omitempty"`
	FS     Filesystem    `json:"filesystem"`
}

// SharedInode is one inode several layers hold (Layer.Shared indexes it).
type SharedInode struct {
	Bytes int64 `json:"bytes"` // allocated bytes
	// Pinned inodes have links outside the store's layers: deleting the
	// layers never frees them.
	Pinned bool `json:"pinned,omitempty"`
}

// Image is one image record of the store.
type Image struct {
	ID      string   `json:"id"`
	Names   []string `json:"names"`
	Digest  string   `json:"digest"`
	Digests []string `json:"digests"`
	// TopLayer and MappedTopLayers are the layers the image references
	// directly; DeleteImage considers all of them.
	TopLayer        string   `json:"top_layer"`
	MappedTopLayers []string `json:"mapped_top_layers,omitempty"`
	// BigDataBytes is the sum of the image's big data items (manifests,
	// config, signatures): freed with the image record itself.
	BigDataBytes int64 `json:"big_data_bytes"`
	// Created is the image config's creation date (not the pull time).
	Created time.Time `json:"created"`
	// ReadOnly images live in an additional, read-only image store.
	ReadOnly bool `json:"read_only"`
	// DiskBytes is what the image's data directory (big data) takes on
	// disk, in allocated blocks; valid when Measured.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	Measured  bool  `json:"measured,omitempty"`
	// OS/Architecture/Variant/HistoryLen come from the image config: Collect
	// reads it only where dangling/intermediate needs it, ReadConfigs for
	// every image.
	OS           string `json:"os,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	Variant      string `json:"variant,omitempty"`
	// HistoryLen is the number of history entries of the image config; with
	// the layer chain it tells parent from child images like libimage does.
	HistoryLen int `json:"history_len,omitempty"`
	// ConfigDigest is the digest the store records for the image's config
	// (big data "sha256:"+ID): the key its cached config fields are kept
	// under, so a cached entry never outlives the bytes it was read from.
	ConfigDigest string `json:"config_digest,omitempty"`
}

// Layer is one layer record of the store.
type Layer struct {
	ID     string `json:"id"`
	Parent string `json:"parent,omitempty"`
	// UncompressedSize is the layer's diff size as the store records it
	// (-1 when unknown); Bytes prefers the measured DiskBytes.
	UncompressedSize   int64     `json:"uncompressed_size"`
	UncompressedDigest string    `json:"uncompressed_digest,omitempty"`
	Created            time.Time `json:"created"` // local creation (≈ pull) time
	ReadOnly           bool      `json:"read_only"`
	// Incomplete marks a layer left half-written by an interrupted operation.
	Incomplete bool `json:"incomplete,omitempty"`
	// DiskBytes is what deleting the layer gives back to the filesystem
	// (allocated blocks of its driver directory and metadata), apart from
	// its Shared inodes; valid when Measured.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	Measured  bool  `json:"measured,omitempty"`
	// Shared indexes Snapshot.Shared: inodes hard-linked with other layers.
	Shared []int `json:"shared,omitempty"`
}

// Bytes is the layer's own size: measured on disk when it could be, else
// as the store records it (0 when unknown).
func (l *Layer) Bytes() int64 {
	if l.Measured {
		return l.DiskBytes
	}
	return max(l.UncompressedSize, 0)
}

// DataBytes is the image's data (big data): measured on disk when it could
// be, else as the store records it.
func (i *Image) DataBytes() int64 {
	if i.Measured {
		return i.DiskBytes
	}
	return i.BigDataBytes
}

// Container is one container record of the store (podman's or buildah's).
type Container struct {
	ID      string    `json:"id"`
	Names   []string  `json:"names"`
	ImageID string    `json:"image_id"`
	LayerID string    `json:"layer_id"`
	Created time.Time `json:"created"`
	// DiskBytes is the container's directory in the graphroot (userdata);
	// its writable layer is among the snapshot's layers.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

// Filesystem describes the filesystem holding the graphroot.
type Filesystem struct {
	Path      string `json:"path"`
	SizeBytes int64  `json:"size_bytes"`
	FreeBytes int64  `json:"free_bytes"` // available to unprivileged users (statfs Bavail)
	UsedBytes int64  `json:"used_bytes"` // size - free blocks
	Device    uint64 `json:"device"`     // st_dev, to find the mount for quotas
	FSType    int64  `json:"fs_type"`    // statfs f_type
}
