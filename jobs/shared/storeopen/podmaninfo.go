package storeopen

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"go.podman.io/storage/types"
)

// PodmanInfo is the part of `podman info --format json` that names the store
// podman uses, kept as podman printed it.
type PodmanInfo struct {
	Store   PodmanStore   `json:"store"`
	Version PodmanVersion `json:"version"`
}

// PodmanStore is podman info's .store section (only the fields that decide
// which store is opened).
type PodmanStore struct {
	ConfigFile      string `json:"configFile"`
	GraphRoot       string `json:"graphRoot"`
	RunRoot         string `json:"runRoot"`
	GraphDriverName string `json:"graphDriverName"`
	// GraphOptions maps option names to a string, to
	// {"Executable": ...} for *mount_program, and (newer podman 5.x) to a
	// list for *additionalImageStores.
	GraphOptions map[string]json.RawMessage `json:"graphOptions"`
	// TransientStore is absent before podman 4.4.
	TransientStore *bool `json:"transientStore,omitempty"`
}

// PodmanVersion is podman info's .version section.
type PodmanVersion struct {
	Version string `json:"Version"`
}

// ParsePodmanInfo decodes the JSON `podman info --format json` prints.
func ParsePodmanInfo(data []byte) (PodmanInfo, error) {
	var info PodmanInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return PodmanInfo{}, fmt.Errorf("decoding podman info: %w", err)
	}
	s := info.Store
	if s.GraphRoot == "" || s.RunRoot == "" || s.GraphDriverName == "" {
		return PodmanInfo{}, fmt.Errorf("podman info names no store (graphRoot %q, runRoot %q, graphDriverName %q)", s.GraphRoot, s.RunRoot, s.GraphDriverName)
	}
	return info, nil
}

// FromPodmanInfo turns podman's answer into the options to open the same
// store, with the user's overrides o applied last (they were passed to
// podman too, so normally they agree).
//
// podman info cannot represent everything exactly: driver options come as a
// map (order lost; in podman 4.x and early 5.x only the last of several
// `imagestore=` additional image stores survives), and the separate image
// store (`imagestore`), pull options, ID maps, auto-userns settings,
// disable_volatile and driver_priority are not reported at all; nor is
// transient_store before podman 4.4. The rule: lib is what containers/storage
// itself read from the same storage.conf (types.LoadStoreOptions, same
// environment). When lib agrees with podman on the graphroot and the driver,
// the unreported fields are taken from lib, and lib's driver option list is
// used as is when it collapses to exactly podman's map (so order and
// duplicates are kept). Otherwise podman's map is used alone (sorted by
// name), the unreported fields stay unset, and a note says so. lib may be
// nil (storage.conf unreadable by the library).
func FromPodmanInfo(info PodmanInfo, lib *types.StoreOptions, o Options) (types.StoreOptions, []string, error) {
	s := info.Store
	podmanOpts, err := podmanDriverOptions(s.GraphOptions)
	if err != nil {
		return types.StoreOptions{}, nil, err
	}
	so := types.StoreOptions{
		GraphRoot:          s.GraphRoot,
		RunRoot:            s.RunRoot,
		GraphDriverName:    s.GraphDriverName,
		GraphDriverOptions: podmanOpts,
	}
	var notes []string
	agrees := lib != nil && samePath(lib.GraphRoot, s.GraphRoot) &&
		(lib.GraphDriverName == "" || normDriver(lib.GraphDriverName) == normDriver(s.GraphDriverName))
	switch {
	case agrees:
		so.ImageStore = lib.ImageStore
		so.GraphDriverPriority = lib.GraphDriverPriority
		so.UIDMap, so.GIDMap = lib.UIDMap, lib.GIDMap
		so.RootAutoNsUser = lib.RootAutoNsUser
		so.AutoNsMinSize, so.AutoNsMaxSize = lib.AutoNsMinSize, lib.AutoNsMaxSize
		so.PullOptions = lib.PullOptions
		so.DisableVolatile = lib.DisableVolatile
		so.TransientStore = lib.TransientStore
		if sameDriverOptions(lib.GraphDriverOptions, s.GraphOptions, s.GraphDriverName) {
			so.GraphDriverOptions = slices.Clone(lib.GraphDriverOptions)
		} else {
			notes = append(notes, "driver options from podman info (storage.conf as read by containers/storage differs)")
		}
	case lib != nil:
		notes = append(notes, fmt.Sprintf("containers/storage reads graphroot %s from storage.conf, podman uses %s: following podman; imagestore, pull options and ID maps are not taken from storage.conf", lib.GraphRoot, s.GraphRoot))
	default:
		notes = append(notes, "storage.conf unreadable by containers/storage: only what podman info reports is used")
	}
	if s.TransientStore != nil {
		so.TransientStore = *s.TransientStore
	}
	o.applyTo(&so)
	return so, notes, nil
}

// podmanDriverOptions rebuilds "name=value" driver options from podman
// info's graphOptions map, sorted by name. *additionalImageStores lists
// become one `<prefix>imagestore=PATH` each (in order) and replace the
// legacy single `<prefix>imagestore` key podman prints next to them.
func podmanDriverOptions(m map[string]json.RawMessage) ([]string, error) {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if prefix, ok := strings.CutSuffix(k, "imagestore"); ok {
			if _, hasList := m[prefix+"additionalImageStores"]; hasList {
				continue
			}
		}
		if prefix, ok := strings.CutSuffix(k, "additionalImageStores"); ok {
			var list []string
			if err := json.Unmarshal(m[k], &list); err != nil {
				return nil, fmt.Errorf("podman info graphOptions %s: %w", k, err)
			}
			for _, v := range list {
				out = append(out, prefix+"imagestore="+v)
			}
			continue
		}
		v, err := optionValue(k, m[k])
		if err != nil {
			return nil, err
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// optionValue decodes one graphOptions value: a string, or the
// {"Executable": ...} podman prints for a mount program.
func optionValue(k string, raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var prog struct {
		Executable string `json:"Executable"`
	}
	if err := json.Unmarshal(raw, &prog); err == nil && prog.Executable != "" {
		return prog.Executable, nil
	}
	return "", fmt.Errorf("podman info graphOptions %s: unexpected value %s", k, raw)
}

// sameDriverOptions reports whether the library's option list, collapsed
// the way podman info collapses it, is exactly podman's map. Keys are
// compared without a "<driver>." prefix of the store's own driver (the
// library and podman's vendored library may spell it differently).
func sameDriverOptions(lib []string, podman map[string]json.RawMessage, driver string) bool {
	lists := false
	for k := range podman {
		if strings.HasSuffix(k, "additionalImageStores") {
			lists = true
		}
	}
	want := map[string]string{}
	for k, raw := range podman {
		if strings.HasSuffix(k, "additionalImageStores") {
			var list []string
			if err := json.Unmarshal(raw, &list); err != nil {
				return false
			}
			want[optionKey(strings.TrimSuffix(k, "additionalImageStores")+"imagestore", driver)] = strings.Join(list, "\x00")
			continue
		}
		if lists && strings.HasSuffix(k, "imagestore") {
			continue
		}
		v, err := optionValue(k, raw)
		if err != nil {
			return false
		}
		want[optionKey(k, driver)] = v
	}
	got := map[string]string{}
	for _, opt := range lib {
		k, v, _ := strings.Cut(opt, "=")
		k = optionKey(k, driver)
		if lists && strings.HasSuffix(k, "imagestore") {
			if prev, ok := got[k]; ok {
				v = prev + "\x00" + v
			}
		}
		got[k] = v
	}
	return maps.Equal(want, got)
}

// optionKey drops a "<driver>." prefix naming the store's own driver.
func optionKey(k, driver string) string {
	for _, d := range []string{driver, normDriver(driver)} {
		if rest, ok := strings.CutPrefix(k, d+"."); ok {
			return rest
		}
	}
	if rest, ok := strings.CutPrefix(k, "overlay2."); ok && normDriver(driver) == "overlay" {
		return rest
	}
	return k
}

// normDriver maps the overlay2 alias to overlay, as containers/storage does.
func normDriver(d string) string {
	if d == "overlay2" {
		return "overlay"
	}
	return d
}

func samePath(a, b string) bool {
	return a != "" && b != "" && filepath.Clean(a) == filepath.Clean(b)
}
