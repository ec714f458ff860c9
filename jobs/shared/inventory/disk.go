package inventory

// This file measures what the store's files take on the filesystem: the
// allocated blocks (st_blocks × 512) of every inode under the directories a
// layer, an image or a container owns, each inode counted once. That is
// what deleting them gives back (statfs free space rises by it), unlike the
// store's diff sizes: a vfs layer is a full copy of its parent's tree, and
// overlay adds work dirs, tar-split metadata and partial blocks.
//
// Hard links: files hard-linked between layers (overlay's use_hard_links,
// zstd:chunked partial pulls) free their blocks only when the last link
// goes. A layer's measurement keeps apart the inodes with links outside its
// own tree; Collect resolves them across layers (see resolveShared).

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// treeUsage is the measurement of one layer, image or container: its own
// allocated bytes and the inodes it shares through hard links with other
// trees.
type treeUsage struct {
	Dev uint64 `json:"dev"`
	// Bytes counts every inode whose links are all inside the tree.
	Bytes int64 `json:"bytes"`
	// Linked are the inodes with links outside the tree.
	Linked []linkedInode `json:"linked,omitempty"`
}

// linkedInode is an inode of a tree that has links elsewhere too.
type linkedInode struct {
	Ino   uint64 `json:"ino"`
	Bytes int64  `json:"bytes"`
}

// walker sums the allocated bytes under some roots, each inode once, and
// never crosses into another filesystem (a running container's merged dir
// is an overlay mount: its files are the layers' own).
type walker struct {
	dev   uint64
	bytes int64
	// multi counts, per inode with several links, the links met so far.
	multi map[uint64]*multiLink
}

type multiLink struct {
	bytes int64
	nlink uint64
	seen  uint64
}

// measureTree measures roots (missing ones are skipped) as one tree. An
// unreadable directory is an error: a figure from part of a tree would be
// wrong without saying so.
func measureTree(roots ...string) (treeUsage, error) {
	w := &walker{multi: map[uint64]*multiLink{}}
	first := true
	for _, root := range roots {
		var st unix.Stat_t
		if err := unix.Lstat(root, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return treeUsage{}, fmt.Errorf("measuring %s: %w", root, err)
		}
		if first {
			w.dev, first = uint64(st.Dev), false //nolint:unconvert // Dev's type differs per arch
		} else if uint64(st.Dev) != w.dev { //nolint:unconvert // Dev's type differs per arch
			continue
		}
		w.add(&st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := w.dir(root); err != nil {
				return treeUsage{}, err
			}
		}
	}
	u := treeUsage{Dev: w.dev, Bytes: w.bytes}
	for ino, m := range w.multi {
		if m.seen >= m.nlink {
			u.Bytes += m.bytes
		} else {
			u.Linked = append(u.Linked, linkedInode{Ino: ino, Bytes: m.bytes})
		}
	}
	return u, nil
}

func (w *walker) add(st *unix.Stat_t) {
	b := st.Blocks * 512
	if st.Nlink <= 1 || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		w.bytes += b
		return
	}
	m, ok := w.multi[st.Ino]
	if !ok {
		m = &multiLink{bytes: b, nlink: uint64(st.Nlink)} //nolint:unconvert // Nlink's type differs per arch
		w.multi[st.Ino] = m
	}
	m.seen++
}

func (w *walker) dir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // removed while we walk
		}
		return fmt.Errorf("measuring %s: %w", path, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("measuring %s: %w", path, err)
	}
	fd := int(f.Fd())
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("measuring %s/%s: %w", path, n, err)
		}
		if uint64(st.Dev) != w.dev { //nolint:unconvert // Dev's type differs per arch
			continue // a mount point
		}
		w.add(&st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := w.dir(filepath.Join(path, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// layout tells where a driver keeps what a layer, an image or a container
// owns (go.podman.io/storage's layerStore.internalDelete, the drivers'
// Remove, imageStore.Delete, store.DeleteContainer).
type layout struct {
	driver string
	// homes are the graphroot, then the additional image stores.
	homes []string
}

// measurable reports whether Collect knows the driver's directories.
func (lo layout) measurable() bool { return lo.driver == "overlay" || lo.driver == "vfs" }

// layerPaths are what deleting layer id removes: the driver's directory
// (overlay: diff, work, merged, link, lower; vfs: the full tree), overlay's
// short link under l/, the tar-split file and the layer's data directory.
func (lo layout) layerPaths(id string) []string {
	for _, h := range lo.homes {
		var dir string
		switch lo.driver {
		case "overlay":
			dir = filepath.Join(h, "overlay", id)
		case "vfs":
			dir = filepath.Join(h, "vfs", "dir", id)
		}
		if _, err := os.Lstat(dir); err != nil {
			continue
		}
		meta := filepath.Join(h, lo.driver+"-layers", id)
		paths := []string{dir, meta + ".tar-split.gz", meta}
		if lo.driver == "overlay" {
			if link, err := os.ReadFile(filepath.Join(dir, "link")); err == nil && validLink(string(link)) {
				paths = append(paths, filepath.Join(h, "overlay", "l", string(link)))
			}
		}
		return paths
	}
	return nil
}

// validLink guards against a link file naming something outside l/.
func validLink(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// imagePaths is the image's data directory (manifests, config, signatures).
func (lo layout) imagePaths(id string, readOnly bool) []string {
	homes := lo.homes[:1]
	if readOnly {
		homes = lo.homes
	}
	for _, h := range homes {
		dir := filepath.Join(h, lo.driver+"-images", id)
		if _, err := os.Lstat(dir); err == nil {
			return []string{dir}
		}
	}
	return nil
}

// containerPaths is the container's directory in the graphroot (its
// userdata: podman's config.json, hosts files, logs).
func (lo layout) containerPaths(id string) []string {
	return []string{filepath.Join(lo.homes[0], lo.driver+"-containers", id)}
}

// additionalStores lists the additional image stores among the driver
// options ("imagestore=PATH" or "DRIVER.imagestore=PATH").
func additionalStores(driver string, opts []string) []string {
	var out []string
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || v == "" {
			continue
		}
		k = strings.ToLower(strings.TrimPrefix(k, driver+"."))
		if k == "imagestore" || k == "additionalimagestore" {
			out = append(out, v)
		}
	}
	return out
}
