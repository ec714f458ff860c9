package quadlet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/stowage/stowage/policy/regfile"
)

// unitTypes are the file extensions podman's quadlet generator reads.
var unitTypes = map[string]bool{
	".container": true, ".volume": true, ".kube": true, ".network": true,
	".image": true, ".build": true, ".pod": true, ".artifact": true,
}

// Load reads the Quadlet units in dirs (a search path as SystemDirs,
// UserDirs or ExpandDirs return it, not recursed again) the way the
// generator does: the first file of a name wins across dirs, and every
// unit gets its drop-ins merged. Missing directories are skipped; any
// other error (unreadable directory or file, a syntax error) is returned
// joined with the others, together with the units that did load.
func Load(dirs []string) ([]*UnitFile, error) {
	var (
		units []*UnitFile
		seen  = map[string]bool{}
		errs  []error
	)
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("quadlet: reading %s: %w", dir, err))
			}
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if seen[name] || !unitTypes[extOf(name)] {
				continue
			}
			u, err := readUnit(filepath.Join(dir, name))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			seen[name] = true
			units = append(units, u)
		}
	}
	for _, u := range units {
		if err := mergeDropins(u, dirs); err != nil {
			errs = append(errs, err)
		}
	}
	return units, errors.Join(errs...)
}

// MaxUnitSize bounds a unit or drop-in file; real ones are a few hundred
// bytes.
const MaxUnitSize = 1 << 20

// readUnit reads and parses one unit or drop-in file. Only a regular file
// (after following symlinks) of at most MaxUnitSize is read: a FIFO named
// like a unit would hang the scan and a link to /dev/zero exhaust memory.
func readUnit(path string) (*UnitFile, error) {
	data, err := regfile.Read(path, MaxUnitSize)
	if err != nil {
		return nil, fmt.Errorf("quadlet: %w", err)
	}
	u, err := ParseUnit(filepath.Base(path), string(data))
	if err != nil {
		return nil, fmt.Errorf("quadlet: %s: %w", path, err)
	}
	u.Path = path
	return u, nil
}

// mergeDropins merges u's drop-ins: the *.conf files of every directory
// DropinDirs names, in every search path. A file name seen in a more
// specific drop-in directory (then an earlier search path) hides the
// same name elsewhere; the rest are merged in lexical order of their file
// names, so a later file overrides an earlier one. This is the order of
// podman 5.6 and later; podman 5.2 to 5.5 preferred the earlier search
// path over the more specific directory, which only differs when one
// .conf name is used in two drop-in directories of a unit.
func mergeDropins(u *UnitFile, dirs []string) error {
	var errs []error
	found := map[string]string{} // file name → path
	for _, dd := range DropinDirs(u.Name) {
		for _, dir := range dirs {
			p := filepath.Join(dir, dd)
			entries, err := os.ReadDir(p)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("quadlet: reading drop-ins %s: %w", p, err))
				}
				continue
			}
			for _, e := range entries {
				n := e.Name()
				if extOf(n) != ".conf" || found[n] != "" {
					continue
				}
				found[n] = filepath.Join(p, n)
			}
		}
	}
	names := make([]string, 0, len(found))
	for n := range found {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d, err := readUnit(found[n])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		u.Merge(d)
	}
	return errors.Join(errs...)
}
