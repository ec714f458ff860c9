// Package quadlet finds the images that Podman Quadlet units reference, so
// the prune job never removes an image a unit will start: Image= in
// *.container and *.image files (following Image=NAME.image to that unit),
// and the image: fields of the Kubernetes YAML a *.kube file points to.
package quadlet

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"go.podman.io/image/v5/docker/reference"

	"github.com/stowage/stowage/jobs/inventory"
)

// SystemDirs are the directories podman's quadlet generator reads for
// system units.
var SystemDirs = []string{"/run/containers/systemd", "/etc/containers/systemd", "/usr/share/containers/systemd"}

// UserDirs returns the directories quadlet reads for a user's units.
func UserDirs(uid int) []string {
	var dirs []string
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "containers", "systemd"))
	} else if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".config", "containers", "systemd"))
	}
	if r := os.Getenv("XDG_RUNTIME_DIR"); r != "" {
		dirs = append(dirs, filepath.Join(r, "containers", "systemd"))
	}
	return append(dirs,
		fmt.Sprintf("/etc/containers/systemd/users/%d", uid),
		"/etc/containers/systemd/users")
}

// Ref is one image reference found in a unit.
type Ref struct {
	Ref  string // normalized reference, or the raw text when unparsable
	Unit string // file that names it
}

// Refs is the set of references from a scan.
type Refs struct {
	list []Ref
	full map[string]string // normalized name → unit
	// short holds unqualified names ("alpine:latest"), which podman resolves
	// through the search registries: they match any registry.
	short map[string]string
	// ids holds image IDs (or prefixes) given as Image=.
	ids map[string]string
}

// List returns the references found, sorted.
func (r *Refs) List() []Ref { return r.list }

// Match implements the prune planner's Matcher: it returns the unit that
// references the image, or "".
func (r *Refs) Match(id string, names []string) string {
	if r == nil {
		return ""
	}
	for p, unit := range r.ids {
		if strings.HasPrefix(id, p) {
			return unit
		}
	}
	for _, n := range names {
		if u, ok := r.full[n]; ok {
			return u
		}
		for short, u := range r.short {
			if strings.HasSuffix(n, "/"+short) {
				return u
			}
		}
	}
	return ""
}

var kubeImage = regexp.MustCompile(`^\s*(?:-\s*)?image:\s*["']?([^"'\s#]+)`)

// Scan reads every unit in dirs (missing directories are fine). A unit it
// cannot read is an error: the caller must not prune blindly.
func Scan(dirs []string) (*Refs, error) {
	r := &Refs{full: map[string]string{}, short: map[string]string{}, ids: map[string]string{}}
	imageUnits := map[string]string{} // NAME.image → its Image=
	type pending struct{ ref, unit string }
	var containerRefs []pending
	var errs []error
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.IsDir() {
				return nil
			}
			switch filepath.Ext(p) {
			case ".container", ".image":
				v, err := unitKey(p, "Image")
				if err != nil {
					errs = append(errs, err)
					return nil
				}
				for _, ref := range v {
					if filepath.Ext(p) == ".image" {
						imageUnits[filepath.Base(p)] = ref
					}
					containerRefs = append(containerRefs, pending{ref, p})
				}
			case ".kube":
				ys, err := unitKey(p, "Yaml")
				if err != nil {
					errs = append(errs, err)
					return nil
				}
				for _, y := range ys {
					if !filepath.IsAbs(y) {
						y = filepath.Join(filepath.Dir(p), y)
					}
					refs, err := yamlImages(y)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					for _, ref := range refs {
						containerRefs = append(containerRefs, pending{ref, p})
					}
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("quadlet: %s: %w", dir, err))
		}
	}
	for _, c := range containerRefs {
		ref := c.ref
		if strings.HasSuffix(ref, ".image") {
			target, ok := imageUnits[ref]
			if !ok {
				continue // the .image unit itself is scanned and added
			}
			ref = target
		}
		r.add(ref, c.unit)
	}
	sort.Slice(r.list, func(i, j int) bool { return r.list[i].Ref < r.list[j].Ref })
	return r, errors.Join(errs...)
}

func (r *Refs) add(ref, unit string) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return
	}
	if id := strings.TrimPrefix(ref, "sha256:"); inventory.IsIDPrefix(id) {
		r.ids[id] = unit
		r.list = append(r.list, Ref{Ref: id, Unit: unit})
		return
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		// Unparsable: keep anything whose name ends with it, to be safe.
		r.short[ref] = unit
		r.list = append(r.list, Ref{Ref: ref, Unit: unit})
		return
	}
	full := reference.TagNameOnly(named).String()
	r.full[full] = unit
	r.list = append(r.list, Ref{Ref: full, Unit: unit})
	// "alpine" and "library/alpine" are short names podman resolves via
	// unqualified-search-registries, not necessarily docker.io.
	if first, _, ok := strings.Cut(ref, "/"); !ok || !strings.ContainsAny(first, ".:") && first != "localhost" {
		short := reference.FamiliarString(reference.TagNameOnly(named))
		r.short[short] = unit
		if !strings.Contains(short, "/") {
			r.short["library/"+short] = unit
		}
	}
}

// unitKey returns the values of key in a unit file's [Container], [Image]
// or [Kube] section.
func unitKey(path, key string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("quadlet: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	section := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		if section != "Container" && section != "Image" && section != "Kube" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == key {
			out = append(out, strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("quadlet: reading %s: %w", path, err)
	}
	return out, nil
}

// yamlImages returns the image: values of a Kubernetes YAML file.
func yamlImages(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("quadlet: kube yaml: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if m := kubeImage.FindStringSubmatch(line); m != nil {
			out = append(out, m[1])
		}
	}
	return out, nil
}
