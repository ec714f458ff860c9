package inventory

import (
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/stowage/stowage/jobs/shared/layergraph"
)

// SnapshotCacheName is the file, in the store's run root, that keeps the
// last snapshot a measuring Collect took, with the stamps of the store's
// record files it was taken under. containers/storage writes every change
// to images, layers and containers by replacing one of those files, so
// while each still has its stamp (inode, size, mtime in ns) the records are
// the ones the snapshot was taken from, and so are the image and layer
// directories, which only change with them. Only what changes without a
// record change is measured again: container directories and writable
// layers, and the filesystem. CachedSnapshot serves a read-only `df`
// without loading the store (which, on a big store, is most of its time).
const SnapshotCacheName = "stowage-df-snapshot.json"

const snapshotCacheVersion = 1

type snapshotCache struct {
	Version int    `json:"version"`
	Driver  string `json:"driver"`
	// Homes are the graphroot and the additional image stores.
	Homes   []string      `json:"homes"`
	RunRoot string        `json:"runroot"`
	Records []recordStamp `json:"records"`
	// Snapshot is as Collect returned it; its FS is re-read.
	Snapshot *layergraph.Snapshot `json:"snapshot"`
}

type recordStamp struct {
	Path  string    `json:"path"`
	Stamp fileStamp `json:"stamp"`
}

// recordFiles are the files containers/storage keeps its records in, for
// the writable store (graphroot, volatile and transient locations) and each
// additional store: every change to the records replaces one of them.
func recordFiles(lo layout, runRoot string) []string {
	d := lo.driver
	var out []string
	for i, h := range lo.homes {
		out = append(out,
			filepath.Join(h, d+"-images", "images.json"),
			filepath.Join(h, d+"-layers", "layers.json"),
			filepath.Join(h, d+"-layers", "volatile-layers.json"))
		if i == 0 {
			out = append(out,
				filepath.Join(h, d+"-images", "layers.json"),
				filepath.Join(h, d+"-containers", "containers.json"),
				filepath.Join(h, d+"-containers", "volatile-containers.json"),
				filepath.Join(runRoot, d+"-layers", "volatile-layers.json"),
				filepath.Join(runRoot, d+"-containers", "volatile-containers.json"))
		}
	}
	return out
}

// stampRecords stamps the record files (a missing one has the zero stamp).
func stampRecords(lo layout, runRoot string) []recordStamp {
	files := recordFiles(lo, runRoot)
	out := make([]recordStamp, len(files))
	for i, f := range files {
		out[i] = recordStamp{Path: f, Stamp: stampOf(f)}
	}
	return out
}

// saveSnapshotCache keeps s, taken under the records stamped in records.
func saveSnapshotCache(path string, lo layout, runRoot string, records []recordStamp, s *layergraph.Snapshot) {
	c := snapshotCache{Version: snapshotCacheVersion, Driver: lo.driver, Homes: lo.homes, RunRoot: runRoot, Records: records, Snapshot: s}
	writeFileAtomic(path, c)
}

// CachedSnapshot returns the snapshot the last measuring Collect of this
// store took, when the store's records are still the files it was taken
// from: its containers' directories and writable layers measured again and
// the filesystem holding fsPath (the graphroot when empty) read now. It
// reports false, and the caller collects, when there is no such snapshot,
// a record changed, the store's layout differs (driver, additional stores
// from graphOptions) or a container could not be measured.
func CachedSnapshot(graphRoot, runRoot, driver string, graphOptions []string, fsPath string, now time.Time) (*layergraph.Snapshot, bool) {
	lo := layout{driver: driver, homes: append([]string{graphRoot}, additionalStores(driver, graphOptions)...)}
	if !lo.measurable() {
		return nil, false
	}
	data, err := os.ReadFile(filepath.Join(runRoot, SnapshotCacheName))
	if err != nil {
		return nil, false
	}
	var c snapshotCache
	if cacheJSON.Unmarshal(data, &c) != nil || c.Version != snapshotCacheVersion || c.Snapshot == nil ||
		c.Driver != driver || c.RunRoot != runRoot || !slices.Equal(c.Homes, lo.homes) {
		return nil, false
	}
	if !slices.Equal(c.Records, stampRecords(lo, runRoot)) {
		return nil, false
	}
	s := c.Snapshot
	if s.GraphRoot != graphRoot || s.RunRoot != runRoot || s.Driver != driver {
		return nil, false
	}
	if !remeasureContainers(s, lo) {
		return nil, false
	}
	if fsPath == "" {
		fsPath = graphRoot
	}
	fs, err := Statfs(fsPath)
	if err != nil {
		return nil, false
	}
	s.FS, s.Taken = fs, now
	return s, true
}

// remeasureContainers measures the containers' directories and writable
// layers again, as measureDisk does; false when one cannot be measured or
// a writable layer now shares inodes (then only a full run resolves them).
func remeasureContainers(s *layergraph.Snapshot, lo layout) bool {
	writable := make(map[string]bool, len(s.Containers))
	for i := range s.Containers {
		c := &s.Containers[i]
		writable[c.LayerID] = true
		u, err := measureTree(lo.containerPaths(c.ID)...)
		if err != nil {
			return false
		}
		c.DiskBytes = u.Bytes
		for _, li := range u.Linked {
			c.DiskBytes += li.Bytes
		}
	}
	share := recordShare(filepath.Join(lo.homes[0], lo.driver+"-layers", "layers.json"),
		countWritable(len(s.Layers), func(i int) bool { return s.Layers[i].ReadOnly }))
	for i := range s.Layers {
		l := &s.Layers[i]
		if !writable[l.ID] {
			continue
		}
		paths := lo.layerPaths(l.ID)
		if len(paths) == 0 || len(l.Shared) > 0 {
			return false
		}
		u, err := measureTree(paths...)
		if err != nil || len(u.Linked) > 0 {
			return false
		}
		l.Measured, l.DiskBytes = true, u.Bytes
		if !l.ReadOnly {
			l.DiskBytes += share
		}
	}
	return true
}
