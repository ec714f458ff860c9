package testenv

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// AllocatedBytes is what the files under root take on the filesystem:
// Σ st_blocks × 512, each inode once (hard links), directories included,
// other filesystems (mount points) left out. It is the truth the tests and
// benchmarks compare with: what deleting the files gives back. Unlike `du`,
// it does not depend on the coreutils version (coreutils 9.7 counts a
// directory as 0 bytes, 9.1 as its blocks).
func AllocatedBytes(root string) (int64, error) {
	var rootDev uint64
	seen := map[[2]uint64]struct{}{}
	var total int64
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat_t", path)
		}
		dev := uint64(st.Dev) //nolint:unconvert // Dev's type differs per arch
		if path == root {
			rootDev = dev
		} else if dev != rootDev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		key := [2]uint64{dev, uint64(st.Ino)} //nolint:unconvert // Ino's type differs per arch
		if _, dup := seen[key]; dup {
			return nil
		}
		seen[key] = struct{}{}
		total += int64(st.Blocks) * 512 //nolint:unconvert // Blocks' type differs per arch
		return nil
	})
	return total, err
}
