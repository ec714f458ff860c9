// Package quadlet finds the images that Podman Quadlet units reference, so
// the prune job never removes an image a unit will start. It reads units
// as podman 5 and 6's quadlet generator does (search paths with their
// subdirectories, first file of a name wins, drop-ins, templates) and
// collects Image= of .container, .image (and ImageTag=), .build
// (ImageTag=), .volume (Driver=image), --infra-image of .pod and the
// image: fields of a .kube's YAML, resolving Image=NAME.image and
// Image=NAME.build to the image that unit produces.
//
// ParseUnit and Images are pure; Layout, ExpandDirs and Load read the
// filesystem; Scan puts them together.
package quadlet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/stowage/stowage/policy/imageref"
	"github.com/stowage/stowage/policy/regfile"
)

// SystemDirs returns the search path of podman's system quadlet generator
// on this host.
func SystemDirs() []string { return DefaultLayout().SystemDirs() }

// UserDirs returns the search path of podman's user quadlet generator for
// uid on this host.
func UserDirs(uid int) []string { return DefaultLayout().UserDirs(uid) }

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
	// prefixes holds the text before a systemd specifier ("localhost/app:"
	// for "localhost/app:%i"): names starting with it match, at any
	// registry when it is unqualified.
	prefixes map[string]string
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
		for p, unit := range r.prefixes {
			if strings.HasPrefix(n, p) || strings.Contains(n, "/"+p) {
				return unit
			}
		}
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

// Scan loads the units in dirs (a search path: see SystemDirs, UserDirs,
// ExpandDirs) and returns the images they reference. Anything it cannot
// read or resolve is an error, returned with the references it did find:
// the caller must not prune blindly.
func Scan(dirs []string) (*Refs, error) {
	units, lerr := Load(dirs)
	uses, ierr := Images(units, readYAML)
	r := &Refs{full: map[string]string{}, short: map[string]string{}, ids: map[string]string{}, prefixes: map[string]string{}}
	for _, u := range uses {
		r.add(u.Image, u.Unit)
	}
	sort.Slice(r.list, func(i, j int) bool {
		if r.list[i].Ref != r.list[j].Ref {
			return r.list[i].Ref < r.list[j].Ref
		}
		return r.list[i].Unit < r.list[j].Unit
	})
	return r, errors.Join(lerr, ierr)
}

// MaxYAMLSize bounds a .kube unit's Yaml= file.
const MaxYAMLSize = 16 << 20

// readYAML reads a .kube's Yaml= file, a regular file of at most
// MaxYAMLSize (see readUnit). A leading %h (systemd's home
// directory specifier) is expanded; other specifiers are not, so such a
// path fails to read and the scan fails closed.
func readYAML(path string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(path, "%h/"); ok {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("expanding %%h: %w", err)
		}
		path = filepath.Join(home, rest)
	}
	data, err := regfile.Read(path, MaxYAMLSize)
	if err != nil {
		return nil, fmt.Errorf("reading kube yaml: %w", err)
	}
	return data, nil
}

// Image is one normalized reference with the units that name it.
type Image struct {
	Ref   string   `json:"ref"`
	Units []string `json:"units"`
}

// Images returns each reference once, sorted, with its units.
func (r *Refs) Images() []Image {
	var out []Image
	for _, ref := range r.list {
		if n := len(out); n > 0 && out[n-1].Ref == ref.Ref {
			if u := out[n-1].Units; u[len(u)-1] != ref.Unit {
				out[n-1].Units = append(u, ref.Unit)
			}
			continue
		}
		out = append(out, Image{Ref: ref.Ref, Units: []string{ref.Unit}})
	}
	return out
}

func (r *Refs) add(ref, unit string) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return
	}
	if i := strings.IndexByte(ref, '%'); i >= 0 {
		// A specifier systemd expands at start (a template's %i): any
		// image whose name starts with the text before it is protected.
		r.prefixes[ref[:i]] = unit
		r.list = append(r.list, Ref{Ref: ref, Unit: unit})
		return
	}
	if id := strings.TrimPrefix(ref, "sha256:"); imageref.IsIDPrefix(id) {
		r.ids[id] = unit
		r.list = append(r.list, Ref{Ref: id, Unit: unit})
		return
	}
	full, err := imageref.Normalize(ref)
	if err != nil {
		// Unparsable: keep anything whose name ends with it, to be safe.
		r.short[ref] = unit
		r.list = append(r.list, Ref{Ref: ref, Unit: unit})
		return
	}
	r.full[full] = unit
	r.list = append(r.list, Ref{Ref: full, Unit: unit})
	// "alpine" and "library/alpine" are short names podman resolves via
	// unqualified-search-registries, not necessarily docker.io.
	if imageref.Unqualified(ref) {
		short, _ := imageref.Familiar(full) // full parsed a moment ago
		r.short[short] = unit
		if !strings.Contains(short, "/") {
			r.short["library/"+short] = unit
		}
	}
}
