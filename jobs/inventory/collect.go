package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	storage "go.podman.io/storage"
	"golang.org/x/sys/unix"
)

// Collect takes a snapshot of st: images (with big data sizes and, read from
// the image config, os/arch/variant), layers, containers, and statfs of the
// filesystem holding fsPath (the graphroot when empty). It only reads.
func Collect(ctx context.Context, st storage.Store, fsPath string, now time.Time) (*Snapshot, error) {
	s := &Snapshot{Taken: now, GraphRoot: st.GraphRoot(), RunRoot: st.RunRoot(), Driver: st.GraphDriverName()}
	layers, err := st.Layers()
	if err != nil {
		return nil, fmt.Errorf("listing layers: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	images, err := st.Images()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	containers, err := st.Containers()
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}

	containerLayers := make(map[string]struct{}, len(containers))
	s.Containers = make([]Container, 0, len(containers))
	for _, c := range containers {
		containerLayers[c.LayerID] = struct{}{}
		s.Containers = append(s.Containers, Container{
			ID: c.ID, Names: c.Names, ImageID: c.ImageID, LayerID: c.LayerID, Created: c.Created,
		})
	}

	s.Layers = make([]Layer, 0, len(layers))
	for _, l := range layers {
		size := l.UncompressedSize
		// As store.ImageSize: the recorded size is only valid with a digest.
		// Image layers without one are measured; container layers are not
		// (that would walk their whole tree, and no image prune frees them).
		if _, isContainer := containerLayers[l.ID]; !isContainer && (l.UncompressedDigest == "" || size < 0) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if n, err := st.DiffSize("", l.ID); err == nil {
				size = n
			} else {
				size = -1
			}
		}
		s.Layers = append(s.Layers, Layer{
			ID:                 l.ID,
			Parent:             l.Parent,
			UncompressedSize:   size,
			UncompressedDigest: l.UncompressedDigest.String(),
			Created:            l.Created,
			ReadOnly:           l.ReadOnly,
			Incomplete:         isIncomplete(l),
		})
	}

	s.Images = make([]Image, 0, len(images))
	for i := range images {
		img := &images[i]
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out := Image{
			ID:              img.ID,
			Names:           img.Names,
			Digest:          img.Digest.String(),
			TopLayer:        img.TopLayer,
			MappedTopLayers: img.MappedTopLayers,
			Created:         img.Created,
			ReadOnly:        img.ReadOnly,
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
		readConfig(st, img, &out)
		s.Images = append(s.Images, out)
	}

	if fsPath == "" {
		fsPath = s.GraphRoot
	}
	fs, err := Statfs(fsPath)
	if err != nil {
		return nil, err
	}
	s.FS = fs
	return s, nil
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
func readConfig(st storage.Store, img *storage.Image, out *Image) {
	key := "sha256:" + img.ID
	found := false
	for _, n := range img.BigDataNames {
		if n == key {
			found = true
			break
		}
	}
	if !found {
		return
	}
	data, err := st.ImageBigData(img.ID, key)
	if err != nil {
		return
	}
	var c imageConfig
	if json.Unmarshal(data, &c) != nil {
		return
	}
	out.OS, out.Architecture, out.Variant, out.HistoryLen = c.OS, c.Architecture, c.Variant, len(c.History)
}

// Statfs describes the filesystem holding path.
func Statfs(path string) (Filesystem, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return Filesystem{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Filesystem{}, fmt.Errorf("stat %s: %w", path, err)
	}
	bs := int64(sfs.Bsize) //nolint:unconvert // Bsize's type differs per arch
	return Filesystem{
		Path:      path,
		SizeBytes: int64(sfs.Blocks) * bs,
		FreeBytes: int64(sfs.Bavail) * bs,
		UsedBytes: int64(sfs.Blocks-sfs.Bfree) * bs,
		Device:    uint64(st.Dev), //nolint:unconvert // Dev's type differs per arch
		FSType:    int64(sfs.Type),
	}, nil
}
