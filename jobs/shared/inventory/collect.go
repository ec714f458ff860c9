// Package inventory takes a snapshot of a containers/storage store (images,
// layers, containers, what each takes on disk, the filesystem; Collect) and
// computes df's and images' exact accounting from it (Account): per-image
// unique and shared bytes, reclaimable bytes, orphan layers. The snapshot
// model and every question about the layer graph (reachability,
// dangling/intermediate, deletion simulation) live in layergraph, which
// prune uses too. Account is pure: it reads only a snapshot.
package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	storage "go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/shared/layergraph"
)

// Collect takes a snapshot of st: images (with big data sizes), layers,
// containers, what each takes on disk (allocated blocks, measured once per
// layer and cached in the run root, see DiskCacheName), and statfs of the filesystem holding fsPath (the graphroot when
// empty). It only reads. Image configs are read (os/arch/variant, history
// length) only where telling dangling from intermediate images needs them:
// each read takes the store's lock and opens a file, so they are read a few
// at a time. ReadConfigs fills them for every image.
func Collect(ctx context.Context, st storage.Store, fsPath string, now time.Time) (*layergraph.Snapshot, error) {
	s := &layergraph.Snapshot{Taken: now, GraphRoot: st.GraphRoot(), RunRoot: st.RunRoot(), Driver: st.GraphDriverName()}
	lo := layout{driver: s.Driver, homes: append([]string{s.GraphRoot}, additionalStores(s.Driver, st.GraphOptions())...)}
	// Stamped before any record is read: a change made while this runs
	// leaves a newer file, and CachedSnapshot collects again.
	var records []recordStamp
	if lo.measurable() {
		records = stampRecords(lo, s.RunRoot)
	}
	// The three stores have their own locks and the layer store loads on
	// first use: list them side by side (the library is goroutine-safe).
	var (
		wg                 sync.WaitGroup
		layers             []storage.Layer
		containers         []storage.Container
		errLayers, errCtrs error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if layers, errLayers = st.Layers(); errLayers != nil {
			return
		}
		containers, errCtrs = st.Containers()
	}()
	images, err := st.Images()
	wg.Wait()
	switch {
	case errLayers != nil:
		return nil, fmt.Errorf("listing layers: %w", errLayers)
	case err != nil:
		return nil, fmt.Errorf("listing images: %w", err)
	case errCtrs != nil:
		return nil, fmt.Errorf("listing containers: %w", errCtrs)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	containerLayers := make(map[string]struct{}, len(containers))
	s.Containers = make([]layergraph.Container, 0, len(containers))
	for _, c := range containers {
		containerLayers[c.LayerID] = struct{}{}
		s.Containers = append(s.Containers, layergraph.Container{
			ID: c.ID, Names: c.Names, ImageID: c.ImageID, LayerID: c.LayerID, Created: c.Created,
		})
	}

	s.Layers = make([]layergraph.Layer, 0, len(layers))
	for _, l := range layers {
		size := l.UncompressedSize
		// As store.ImageSize: the recorded size is only valid with a digest.
		// Where the driver's directories are not walked below, image layers
		// without one are measured by the driver; container layers are not
		// (that would walk their whole tree, and no image prune frees them).
		if _, isContainer := containerLayers[l.ID]; !lo.measurable() && !isContainer && (l.UncompressedDigest == "" || size < 0) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if n, err := st.DiffSize("", l.ID); err == nil {
				size = n
			} else {
				size = -1
			}
		}
		s.Layers = append(s.Layers, layergraph.Layer{
			ID:                 l.ID,
			Parent:             l.Parent,
			UncompressedSize:   size,
			UncompressedDigest: l.UncompressedDigest.String(),
			Created:            l.Created,
			ReadOnly:           l.ReadOnly,
			Incomplete:         isIncomplete(l),
		})
	}

	s.Images = make([]layergraph.Image, 0, len(images))
	for i := range images {
		img := &images[i]
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out := layergraph.Image{
			ID:              img.ID,
			Names:           img.Names,
			Digest:          img.Digest.String(),
			TopLayer:        img.TopLayer,
			MappedTopLayers: img.MappedTopLayers,
			Created:         img.Created,
			ReadOnly:        img.ReadOnly,
			ConfigDigest:    img.BigDataDigests["sha256:"+img.ID].String(),
		}
		for _, d := range img.Digests {
			out.Digests = append(out.Digests, d.String())
		}
		for _, name := range img.BigDataNames {
			n, ok := img.BigDataSizes[name]
			if !ok {
				if n, err = st.ImageBigDataSize(img.ID, name); err != nil {
					n = 0
				}
			}
			out.BigDataBytes += n
		}
		s.Images = append(s.Images, out)
	}
	// One cache for configs and disk figures, read once and written once.
	cachePath := ""
	if lo.measurable() {
		cachePath = filepath.Join(s.RunRoot, DiskCacheName)
	}
	cache := loadDiskCache(cachePath)
	readNeededConfigs(ctx, st, s, cache)
	if err := ctx.Err(); err != nil {
		return nil, err // some configs were left unread
	}
	// What the files take on disk: the figures accounting and pruning use.
	if err := measureDisk(ctx, s, lo, cache, cachePath, containerLayers); err != nil {
		return nil, err
	}
	// A measurable driver's layer that could not be walked falls back to
	// the recorded size, or the driver's diff size where none is recorded.
	for i := range s.Layers {
		l := &s.Layers[i]
		if _, isContainer := containerLayers[l.ID]; !lo.measurable() || l.Measured || isContainer || (l.UncompressedDigest != "" && l.UncompressedSize >= 0) {
			continue
		}
		if n, err := st.DiffSize("", l.ID); err == nil {
			l.UncompressedSize = n
		}
	}

	if fsPath == "" {
		fsPath = s.GraphRoot
	}
	fs, err := Statfs(fsPath)
	if err != nil {
		return nil, err
	}
	s.FS = fs
	if lo.measurable() {
		saveSnapshotCache(filepath.Join(s.RunRoot, SnapshotCacheName), lo, s.RunRoot, records, s)
	}
	return s, nil
}

// ReadConfigs fills OS, Architecture, Variant and HistoryLen of every image
// of s from its config (images whose config cannot be read keep them empty).
func ReadConfigs(ctx context.Context, st storage.Store, s *layergraph.Snapshot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	idx := make([]int, len(s.Images))
	for i := range idx {
		idx[i] = i
	}
	readConfigs(ctx, st, s, idx, nil)
	return ctx.Err()
}

// readNeededConfigs reads the configs the dangling/intermediate rule needs
// (layergraph.HistoryNeeded). Configs found in cache are taken from it;
// those read are added to it.
func readNeededConfigs(ctx context.Context, st storage.Store, s *layergraph.Snapshot, cache *diskCache) {
	readConfigs(ctx, st, s, layergraph.HistoryNeeded(s), cache)
}

// configReaders bounds the goroutines reading image configs: each read
// takes the image store's (shared) lock and reads one small file, so a few
// readers overlap the system calls without crowding the store.
const configReaders = 4

// readConfigs reads the configs of the images at idx, concurrently; it
// stops handing out work when ctx is done. With a cache, an image whose
// config digest has an entry takes its fields from there (a config is
// content-addressed: the same digest, the same bytes), and the configs read
// are added to it.
func readConfigs(ctx context.Context, st storage.Store, s *layergraph.Snapshot, idx []int, cache *diskCache) {
	if cache != nil {
		var todo []int
		for _, i := range idx {
			img := &s.Images[i]
			if c, ok := cache.Configs[img.ID]; ok && img.ConfigDigest != "" && c.Digest == img.ConfigDigest {
				img.OS, img.Architecture, img.Variant, img.HistoryLen = c.OS, c.Architecture, c.Variant, c.HistoryLen
				continue
			}
			todo = append(todo, i)
		}
		idx = todo
	}
	read := make([]bool, len(idx))
	workers := min(configReaders, len(idx)/8+1)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range next {
				read[j] = readConfig(st, &s.Images[idx[j]]) // distinct elements: no race
			}
		}()
	}
feed:
	for j := range idx {
		select {
		case next <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if cache == nil {
		return
	}
	for j, i := range idx {
		if img := &s.Images[i]; read[j] && img.ConfigDigest != "" {
			cache.Configs[img.ID] = cachedConfig{Digest: img.ConfigDigest, OS: img.OS,
				Architecture: img.Architecture, Variant: img.Variant, HistoryLen: img.HistoryLen}
			cache.configsAdded = true
		}
	}
}

// isIncomplete reports storage's "incomplete" flag on a layer.
func isIncomplete(l storage.Layer) bool {
	v, ok := l.Flags["incomplete"]
	b, isBool := v.(bool)
	return ok && isBool && b
}

// imageConfig is the part of an OCI/Docker image config we read.
type imageConfig struct {
	OS           string            `json:"os"`
	Architecture string            `json:"architecture"`
	Variant      string            `json:"variant"`
	History      []json.RawMessage `json:"history"`
}

// readConfig fills the platform and history length from the image config,
// stored as big data under the config digest (= "sha256:" + image ID). A
// missing or unreadable config leaves them empty: they are informative.
// It reports whether the config was read.
func readConfig(st storage.Store, out *layergraph.Image) bool {
	data, err := st.ImageBigData(out.ID, "sha256:"+out.ID)
	if err != nil {
		return false
	}
	var c imageConfig
	if json.Unmarshal(data, &c) != nil {
		return false
	}
	out.OS, out.Architecture, out.Variant, out.HistoryLen = c.OS, c.Architecture, c.Variant, len(c.History)
	return true
}

// Statfs describes the filesystem holding path.
func Statfs(path string) (layergraph.Filesystem, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return layergraph.Filesystem{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return layergraph.Filesystem{}, fmt.Errorf("stat %s: %w", path, err)
	}
	bs := int64(sfs.Bsize) //nolint:unconvert // Bsize's type differs per arch
	return layergraph.Filesystem{
		Path:      path,
		SizeBytes: int64(sfs.Blocks) * bs,
		FreeBytes: int64(sfs.Bavail) * bs,
		UsedBytes: int64(sfs.Blocks-sfs.Bfree) * bs,
		Device:    uint64(st.Dev), //nolint:unconvert // Dev's type differs per arch
		FSType:    int64(sfs.Type),
	}, nil
}
