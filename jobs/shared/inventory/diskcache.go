package inventory

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	jsoniter "github.com/json-iterator/go"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/shared/layergraph"
)

// cacheJSON decodes and encodes the cache: the decoder containers/storage
// itself uses for its record files, several times faster than
// encoding/json on a warm df, where reading this file is a tenth of the
// run.
var cacheJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// DiskCacheName is the file, in the store's run root, that keeps layer and
// image measurements between runs. Image layers are immutable, so a layer is
// walked once (keyed by ID and creation time, which a re-created layer with
// the same ID does not share); an image's data directory is re-measured when
// its mtime changes (big data is written by rename), and not even looked at
// while images.json is the file it was at the last run: containers/storage
// rewrites that file with every change to an image's data, so on a store
// nobody changed a warm run stats one file instead of one per image.
// Container layers change
// while containers run: they are measured every time. The run root is
// writable by the worker (also inside the rootless user namespace) and is a
// tmpfs: a reboot, which may renumber devices, clears the cache. Entries of
// layers and images that are gone are dropped at each write. The fields of
// image configs that the dangling rule needs are kept too, keyed by image ID
// and checked against the config's recorded digest, so a warm df reads no
// config file.
const DiskCacheName = "stowage-disk-usage.json"

const diskCacheVersion = 2

type diskCache struct {
	Version int                    `json:"version"`
	Layers  map[string]cachedLayer `json:"layers"`
	Images  map[string]cachedImage `json:"images"`
	// ImagesFile is the writable store's images.json when Images was
	// measured.
	ImagesFile fileStamp `json:"images_file"`
	// Configs are image config fields by image ID.
	Configs map[string]cachedConfig `json:"configs"`

	// configsAdded says Configs gained entries in this run.
	configsAdded bool
}

// cachedConfig is what readConfig takes from an image config, with the
// config's digest.
type cachedConfig struct {
	Digest       string `json:"digest"`
	OS           string `json:"os,omitempty"`
	Architecture string `json:"architecture,omitempty"`
	Variant      string `json:"variant,omitempty"`
	HistoryLen   int    `json:"history_len,omitempty"`
}

// newDiskCache is an empty cache.
func newDiskCache() *diskCache {
	return &diskCache{Version: diskCacheVersion, Layers: map[string]cachedLayer{}, Images: map[string]cachedImage{}, Configs: map[string]cachedConfig{}}
}

// fileStamp tells one version of a file from another.
type fileStamp struct {
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime"`
}

// stampOf is path's stamp; the zero stamp when it cannot be read.
func stampOf(path string) fileStamp {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return fileStamp{}
	}
	return fileStamp{Ino: st.Ino, Size: st.Size, MTime: st.Mtim.Nano()}
}

type cachedLayer struct {
	Created time.Time `json:"created"`
	Usage   treeUsage `json:"usage"`
}

type cachedImage struct {
	MTime int64     `json:"mtime"`
	Usage treeUsage `json:"usage"`
}

// loadDiskCache reads the cache at path; an empty one when path is empty,
// the file is missing or damaged, or of another version.
func loadDiskCache(path string) *diskCache {
	if path == "" {
		return newDiskCache()
	}
	c := &diskCache{}
	if data, err := os.ReadFile(path); err == nil {
		_ = cacheJSON.Unmarshal(data, c) // a damaged cache is only a slower run
	}
	if c.Version != diskCacheVersion || c.Layers == nil || c.Images == nil {
		return newDiskCache()
	}
	if c.Configs == nil { // written before configs were kept: still valid
		c.Configs = map[string]cachedConfig{}
	}
	return c
}

// save writes the cache atomically; failing to is not an error (the next
// run measures again).
func (c *diskCache) save(path string) { writeFileAtomic(path, c) }

// writeFileAtomic writes v's JSON to path by rename; failing to is not an
// error (both caches are only ever a faster run).
func writeFileAtomic(path string, v any) {
	data, err := cacheJSON.Marshal(v)
	if err != nil {
		return
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".stowage-cache-*")
	if err != nil {
		return
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
}

// measurers bounds the concurrent directory walks: enough to overlap I/O
// waits on a cold cache, few enough to leave the machine usable.
const measurers = 4

// measureDisk fills the disk figures of s: every layer, image and
// container measured (or taken from the cache), and the inodes layers share
// through hard links. containerLayer tells a container's writable layer.
// Measurement failures leave an item unmeasured (its recorded size stands
// in); they never fail the snapshot.
// cache is the cache loaded from cachePath (configs already added); an
// empty cachePath writes nothing.
func measureDisk(ctx context.Context, s *layergraph.Snapshot, lo layout, cache *diskCache, cachePath string, containerLayer map[string]struct{}) error {
	if !lo.measurable() {
		return nil
	}
	next := &diskCache{Version: diskCacheVersion, Layers: make(map[string]cachedLayer, len(s.Layers)),
		Images: make(map[string]cachedImage, len(s.Images)), Configs: make(map[string]cachedConfig, len(cache.Configs))}
	changed := cache.configsAdded
	for i := range s.Images {
		if c, ok := cache.Configs[s.Images[i].ID]; ok {
			next.Configs[s.Images[i].ID] = c
		}
	}

	usage := make([]*treeUsage, len(s.Layers))
	cached := make([]bool, len(s.Layers))
	var todo []int
	for i := range s.Layers {
		l := &s.Layers[i]
		_, isContainer := containerLayer[l.ID]
		if c, ok := cache.Layers[l.ID]; ok && !isContainer && !l.Incomplete && c.Created.Equal(l.Created) {
			u := c.Usage
			usage[i], cached[i] = &u, true
			continue
		}
		todo = append(todo, i)
	}
	if err := measureLayers(ctx, s, lo, todo, usage); err != nil {
		return err
	}
	changed = changed || len(todo) > 0
	// A hard-linked inode found in one layer only: a cached layer may have
	// gained links since it was measured (a new layer linked to its files),
	// or lost them (the other layer went). Walk the cached layers again.
	if hasLoneLinks(usage) {
		var again []int
		for i := range usage {
			if cached[i] {
				again = append(again, i)
			}
		}
		if err := measureLayers(ctx, s, lo, again, usage); err != nil {
			return err
		}
		changed = changed || len(again) > 0
	}
	for i := range s.Layers {
		l := &s.Layers[i]
		if usage[i] == nil {
			continue
		}
		if _, isContainer := containerLayer[l.ID]; !isContainer && !l.Incomplete {
			next.Layers[l.ID] = cachedLayer{Created: l.Created, Usage: *usage[i]}
		}
	}
	resolveShared(s, usage)
	// The record files (layers.json, images.json) shrink as records go:
	// each layer and image carries its even share of them.
	if share := recordShare(filepath.Join(lo.homes[0], lo.driver+"-layers", "layers.json"), countWritable(len(s.Layers), func(i int) bool { return s.Layers[i].ReadOnly })); share > 0 {
		for i := range s.Layers {
			if l := &s.Layers[i]; l.Measured && !l.ReadOnly {
				l.DiskBytes += share
			}
		}
	}
	imagesJSON := filepath.Join(lo.homes[0], lo.driver+"-images", "images.json")
	imageShare := recordShare(imagesJSON, countWritable(len(s.Images), func(i int) bool { return s.Images[i].ReadOnly }))
	// Stamped before any image directory is looked at: a change made while
	// this run measures leaves a newer images.json, and the next run looks
	// at every directory again.
	next.ImagesFile = stampOf(imagesJSON)
	sameRecords := next.ImagesFile != (fileStamp{}) && next.ImagesFile == cache.ImagesFile

	for i := range s.Images {
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		img := &s.Images[i]
		u, ok := cache.Images[img.ID]
		if !ok || img.ReadOnly || !sameRecords {
			paths := lo.imagePaths(img.ID, img.ReadOnly)
			if len(paths) == 0 {
				continue
			}
			var st unix.Stat_t
			if unix.Lstat(paths[0], &st) != nil {
				continue
			}
			mtime := st.Mtim.Nano()
			if !ok || u.MTime != mtime {
				tu, err := measureTree(paths...)
				if err != nil {
					continue
				}
				u, changed = cachedImage{MTime: mtime, Usage: tu}, true
			}
		}
		next.Images[img.ID] = u
		img.DiskBytes, img.Measured = u.Usage.Bytes, true
		if !img.ReadOnly {
			img.DiskBytes += imageShare
		}
		for _, li := range u.Usage.Linked {
			img.DiskBytes += li.Bytes // big data is never hard-linked to layers
		}
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		if u, err := measureTree(lo.containerPaths(c.ID)...); err == nil {
			c.DiskBytes = u.Bytes
			for _, li := range u.Linked {
				c.DiskBytes += li.Bytes
			}
		}
	}
	if cachePath != "" && (changed || next.ImagesFile != cache.ImagesFile || len(next.Layers) != len(cache.Layers) || len(next.Images) != len(cache.Images) || len(next.Configs) != len(cache.Configs)) {
		next.save(cachePath)
	}
	return ctx.Err()
}

// measureLayers walks the layers at idx, a few at a time, into usage.
func measureLayers(ctx context.Context, s *layergraph.Snapshot, lo layout, idx []int, usage []*treeUsage) error {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(measurers, len(idx)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				usage[i] = nil
				paths := lo.layerPaths(s.Layers[i].ID)
				if len(paths) == 0 {
					continue
				}
				if u, err := measureTree(paths...); err == nil {
					usage[i] = &u // distinct elements: no race
				}
			}
		}()
	}
feed:
	for _, i := range idx {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return ctx.Err()
}

type inodeKey struct{ dev, ino uint64 }

// linkHolders counts, per hard-linked inode, the layers that hold it.
func linkHolders(usage []*treeUsage) map[inodeKey]int {
	holders := map[inodeKey]int{}
	for _, u := range usage {
		if u == nil {
			continue
		}
		for _, li := range u.Linked {
			holders[inodeKey{u.Dev, li.Ino}]++
		}
	}
	return holders
}

func hasLoneLinks(usage []*treeUsage) bool {
	for _, n := range linkHolders(usage) {
		if n < 2 {
			return true
		}
	}
	return false
}

// resolveShared sets each layer's disk figures: an inode hard-linked
// between layers becomes one Shared entry (freed when its last layer goes);
// one found in a single layer has links outside the store's layers (a file
// linked elsewhere by hand, say): it stays in Shared, pinned, never freed.
func resolveShared(s *layergraph.Snapshot, usage []*treeUsage) {
	s.Shared = nil
	index := map[inodeKey]int{}
	holders := linkHolders(usage)
	for i := range s.Layers {
		l := &s.Layers[i]
		l.Shared = nil
		u := usage[i]
		if u == nil {
			l.Measured, l.DiskBytes = false, 0
			continue
		}
		l.Measured, l.DiskBytes = true, u.Bytes
		for _, li := range u.Linked {
			k := inodeKey{u.Dev, li.Ino}
			j, ok := index[k]
			if !ok {
				j = len(s.Shared)
				index[k] = j
				s.Shared = append(s.Shared, layergraph.SharedInode{Bytes: li.Bytes, Pinned: holders[k] < 2})
			}
			l.Shared = append(l.Shared, j)
		}
	}
}

// recordShare is one record's share of a record file's allocated bytes
// (0 when there are no records or the file cannot be read).
func recordShare(path string, records int) int64 {
	var st unix.Stat_t
	if records == 0 || unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512 / int64(records)
}

func countWritable(n int, readOnly func(int) bool) int {
	c := 0
	for i := range n {
		if !readOnly(i) {
			c++
		}
	}
	return c
}
