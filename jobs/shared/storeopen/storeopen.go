// Package storeopen resolves and opens the containers/storage store the host's
// own podman uses, and enters the rootless user namespace when it is needed.
//
// The host's podman is the authority: its version decides how storage.conf
// applies (podman 5 ignores a system storage.conf's graphroot for rootless
// users; the library stowage is built with applies it). So when podman is
// installed, Resolve asks it (`podman info --format json`), passing only the
// overrides the user gave stowage, and caches the answer under a
// fingerprint of every input. Without podman, the store is resolved from
// storage.conf as containers/storage does.
package storeopen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/unshare"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/quota"
)

// Options are the user's overrides, with podman's flag names and meaning.
// Empty fields fall back to the policy's [storage] table, then to podman.
type Options struct {
	GraphRoot  string   `json:"graphRoot,omitempty"`  // --root
	RunRoot    string   `json:"runRoot,omitempty"`    // --runroot
	Driver     string   `json:"driver,omitempty"`     // --storage-driver
	DriverOpts []string `json:"driverOpts,omitempty"` // --storage-opt (repeatable)
}

// Merge returns o with empty fields filled from fallback.
func (o Options) Merge(fallback Options) Options {
	if o.GraphRoot == "" {
		o.GraphRoot = fallback.GraphRoot
	}
	if o.RunRoot == "" {
		o.RunRoot = fallback.RunRoot
	}
	if o.Driver == "" {
		o.Driver = fallback.Driver
	}
	if len(o.DriverOpts) == 0 {
		o.DriverOpts = fallback.DriverOpts
	}
	return o
}

// Equal reports whether o and other name the same overrides.
func (o Options) Equal(other Options) bool {
	return o.GraphRoot == other.GraphRoot && o.RunRoot == other.RunRoot &&
		o.Driver == other.Driver && slices.Equal(o.DriverOpts, other.DriverOpts)
}

// applyTo sets so's fields that the overrides name: explicit settings win.
func (o Options) applyTo(so *types.StoreOptions) {
	if o.GraphRoot != "" {
		so.GraphRoot = o.GraphRoot
	}
	if o.RunRoot != "" {
		so.RunRoot = o.RunRoot
	}
	if o.Driver != "" {
		so.GraphDriverName = o.Driver
	}
	if len(o.DriverOpts) > 0 {
		so.GraphDriverOptions = slices.Clone(o.DriverOpts)
	}
}

// PodmanArgs translates the overrides into podman's global flags.
func (o Options) PodmanArgs() []string {
	var args []string
	if o.GraphRoot != "" {
		args = append(args, "--root", o.GraphRoot)
	}
	if o.RunRoot != "" {
		args = append(args, "--runroot", o.RunRoot)
	}
	if o.Driver != "" {
		args = append(args, "--storage-driver", o.Driver)
	}
	for _, opt := range o.DriverOpts {
		args = append(args, "--storage-opt", opt)
	}
	return args
}

// Sources of a Resolution.
const (
	SourcePodman      = "podman"       // podman info (possibly cached)
	SourceStorageConf = "storage.conf" // containers/storage's own reading; podman not installed
)

// Resolution is the store to open and why.
type Resolution struct {
	Options       types.StoreOptions `json:"options"`
	Source        string             `json:"source"`                  // SourcePodman or SourceStorageConf
	PodmanPath    string             `json:"podmanPath,omitempty"`    // the podman asked
	PodmanVersion string             `json:"podmanVersion,omitempty"` // its version
	ConfigFile    string             `json:"configFile,omitempty"`    // storage.conf podman reports
	Cached        bool               `json:"cached"`                  // podman's answer came from the cache
	CacheFile     string             `json:"cacheFile,omitempty"`     // where it is cached ("" = no cache)
	Notes         []string           `json:"notes,omitempty"`         // how gaps in podman's answer were filled
}

// Resolver resolves the store. The zero value looks podman up in PATH and
// caches its answer in DefaultCacheDir.
type Resolver struct {
	Podman   string        // podman binary; "" = "podman" from PATH
	CacheDir string        // "" = DefaultCacheDir()
	NoCache  bool          // never read or write the cache
	Timeout  time.Duration // for `podman info`; 0 = 60s
}

// Resolve returns the store podman would use with o's overrides applied,
// the graph driver always named. It is Resolver{}.Resolve.
func Resolve(ctx context.Context, o Options) (Resolution, error) {
	return Resolver{}.Resolve(ctx, o)
}

// Resolve returns the store the host's podman uses with o's overrides (see
// the package doc). If podman is installed but `podman info` fails, it
// fails too, with podman's stderr: it never guesses a store.
func (r Resolver) Resolve(ctx context.Context, o Options) (Resolution, error) {
	podman, err := r.podmanPath()
	if errors.Is(err, errNoPodman) {
		so, err := resolveFromStorageConf(o)
		if err != nil {
			return Resolution{}, err
		}
		return Resolution{Options: so, Source: SourceStorageConf, Notes: []string{"podman not installed"}}, nil
	}
	if err != nil {
		return Resolution{}, err
	}
	// What containers/storage itself reads from the same files fills the
	// gaps in podman's answer (FromPodmanInfo documents the rule).
	var lib *types.StoreOptions
	if so, err := types.LoadStoreOptions(types.LoadOptions{}); err == nil {
		lib = &so
	}
	res := Resolution{Source: SourcePodman, PodmanPath: podman}
	var fp string
	if !r.NoCache {
		if res.CacheFile, err = r.cacheFile(o); err != nil {
			return Resolution{}, err
		}
	}
	var info PodmanInfo
	cached := false
	if res.CacheFile != "" {
		if fp, err = fingerprint(podman, o); err != nil {
			return Resolution{}, err
		}
		info, cached = readCache(res.CacheFile, fp, lib)
	}
	if !cached {
		timeout := r.Timeout
		if timeout <= 0 {
			timeout = 60 * time.Second
		}
		out, err := runPodmanInfo(ctx, podman, o.PodmanArgs(), timeout)
		if err != nil {
			return Resolution{}, err
		}
		if info, err = ParsePodmanInfo(out); err != nil {
			return Resolution{}, fmt.Errorf("%s info: %w", podman, err)
		}
		if res.CacheFile != "" {
			if err := writeCache(res.CacheFile, fp, info, lib); err != nil {
				res.CacheFile = "" // a cache that cannot be written is no cache
			}
		}
	}
	so, notes, err := FromPodmanInfo(info, lib, o)
	if err != nil {
		return Resolution{}, fmt.Errorf("%s info: %w", podman, err)
	}
	res.Options = so
	res.PodmanVersion = info.Version.Version
	res.ConfigFile = info.Store.ConfigFile
	res.Cached = cached
	res.Notes = notes
	return res, nil
}

// errNoPodman means podman is not installed; the store is then resolved
// from storage.conf as containers/storage does.
var errNoPodman = errors.New("podman not found in PATH")

// podmanPath finds the podman binary as an absolute path.
func (r Resolver) podmanPath() (string, error) {
	name := r.Podman
	if name == "" {
		name = "podman"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if r.Podman == "" {
			return "", errNoPodman
		}
		return "", fmt.Errorf("podman %s: %w", name, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("podman %s: %w", p, err)
	}
	return abs, nil
}

// resolveFromStorageConf resolves the store as containers/storage does,
// for hosts without podman.
func resolveFromStorageConf(o Options) (types.StoreOptions, error) {
	// LoadStoreOptions (not the cached DefaultStoreOptions) so a daemon reload
	// or a test that changes CONTAINERS_STORAGE_CONF sees the new file.
	so, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		return types.StoreOptions{}, fmt.Errorf("reading storage.conf: %w", err)
	}
	o.applyTo(&so)
	if so.GraphRoot == "" || so.RunRoot == "" {
		return types.StoreOptions{}, errors.New("storage: graphroot and runroot must be set (storage.conf, policy [storage] or --root/--runroot)")
	}
	if so.GraphDriverName == "" {
		so.GraphDriverName = DetectDriver(so.GraphRoot, so.GraphDriverPriority)
	}
	return so, nil
}

// DetectDriver names the driver an existing store was created with, as
// containers/storage would pick it, falling back to the first priority entry
// and then overlay (podman's default). Passing the name explicitly avoids the
// library trying overlay over a vfs store and leaving a stray overlay/ dir.
func DetectDriver(graphRoot string, priority []string) string {
	for _, d := range []string{"overlay", "vfs", "btrfs", "zfs"} {
		if _, err := os.Stat(filepath.Join(graphRoot, d+"-images")); err == nil {
			return d
		}
	}
	if len(priority) > 0 {
		return priority[0]
	}
	return "overlay"
}

// NeedsUserNamespace reports whether opening the store requires entering the
// rootless user namespace first: a non-root user whose store is not vfs
// (vfs metadata is readable outside, but deleting subuid-owned layers is not;
// callers that may delete should enter it for vfs too).
func NeedsUserNamespace(so types.StoreOptions, willDelete bool) bool {
	if !unshare.IsRootless() {
		return false
	}
	return willDelete || so.GraphDriverName != "vfs"
}

// EnterUserNamespace re-executes the current process inside the rootless user
// namespace (0 → the user, plus the /etc/subuid and /etc/subgid ranges), as
// buildah does. It returns only in the re-executed child or when no
// namespace is needed; the parent exits with the child's status. Call it
// before starting goroutines that matter.
//
// The child must open the very store the parent resolved without asking
// podman again (podman cannot run inside that namespace), so res and the
// overrides it was resolved for travel to it in HandoffEnv; the child takes
// them with TakeHandoff. So does q, the user's disk quota the parent read
// as the real uid (nil: none read), since it cannot be read reliably from
// inside the namespace.
func EnterUserNamespace(o Options, res Resolution, q *quota.Reading) error {
	data, err := json.Marshal(handoff{Options: o, Resolution: res, Quota: q})
	if err != nil {
		return fmt.Errorf("handing the store to the user namespace: %w", err)
	}
	if err := os.Setenv(HandoffEnv, string(data)); err != nil {
		return fmt.Errorf("handing the store to the user namespace: %w", err)
	}
	unshare.MaybeReexecUsingUserNamespace(false)
	// Reached in the child or when no re-exec was needed: nothing more to
	// hand on (and podman or helpers started later must not see it).
	return os.Unsetenv(HandoffEnv)
}

// HandoffEnv carries the parent's Resolution (JSON) into the process
// re-executed inside the rootless user namespace.
const HandoffEnv = "_STOWAGE_RESOLVED_STORE"

// handoff is HandoffEnv's content.
type handoff struct {
	Options    Options        `json:"overrides"`
	Resolution Resolution     `json:"resolution"`
	Quota      *quota.Reading `json:"quota,omitempty"`
}

// Handoff is a store resolved by the parent process, taken by the child.
type Handoff struct {
	h handoff
}

// TakeHandoff reads and unsets HandoffEnv. It returns nil when there is none
// or when this process is not the child EnterUserNamespace re-executed (a
// variable set by anyone else is ignored). Call it once, early in main.
func TakeHandoff() (*Handoff, error) {
	data, ok := os.LookupEnv(HandoffEnv)
	if !ok {
		return nil, nil
	}
	if err := os.Unsetenv(HandoffEnv); err != nil {
		return nil, fmt.Errorf("unsetting %s: %w", HandoffEnv, err)
	}
	if os.Getenv(unshare.UsernsEnvName) == "" {
		return nil, nil
	}
	var h handoff
	if err := json.Unmarshal([]byte(data), &h); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", HandoffEnv, err)
	}
	return &Handoff{h: h}, nil
}

// Resolution returns the parent's resolution when it was made for the same
// overrides o; otherwise it fails (the child must not resolve anew).
func (h *Handoff) Resolution(o Options) (Resolution, error) {
	if !h.h.Options.Equal(o) {
		return Resolution{}, fmt.Errorf("store handed to the user namespace was resolved for %+v, not %+v", h.h.Options, o)
	}
	return h.h.Resolution, nil
}

// Quota returns the disk quota reading the parent made for graphRoot, after
// checking it against what the kernel says about this process: it must be
// inside a user namespace whose uid 0 (this process's uid) is the uid the
// reading was made for, and the reading must be for graphRoot. A reading
// that fails the checks is an error, never figures to act on.
func (h *Handoff) Quota(graphRoot string) (*quota.Reading, error) {
	return h.quota(graphRoot, "/proc/self/uid_map", os.Getuid())
}

func (h *Handoff) quota(graphRoot, uidMapFile string, uid int) (*quota.Reading, error) {
	q := h.h.Quota
	if q == nil {
		return nil, errors.New("the parent process handed over no disk quota reading")
	}
	if q.Path != graphRoot {
		return nil, fmt.Errorf("disk quota handed over for %s, not the store at %s", q.Path, graphRoot)
	}
	data, err := os.ReadFile(uidMapFile)
	if err != nil {
		return nil, fmt.Errorf("checking the handed-over disk quota: %w", err)
	}
	outside, ok := OutsideUID(string(data), uid)
	if !ok || outside == uid {
		return nil, fmt.Errorf("disk quota handed over, but this process (uid %d) is not in a user namespace that maps it to another uid", uid)
	}
	if outside != q.UID {
		return nil, fmt.Errorf("disk quota handed over for uid %d, but this process is uid %d outside its user namespace", q.UID, outside)
	}
	return q, nil
}

// OutsideUID maps uid through a uid_map (user_namespaces(7): lines of
// "inside outside count") to the parent namespace's uid.
func OutsideUID(uidMap string, uid int) (int, bool) {
	for _, line := range strings.Split(uidMap, "\n") {
		var in, out, n int64
		if _, err := fmt.Sscan(line, &in, &out, &n); err != nil {
			continue
		}
		if int64(uid) >= in && int64(uid) < in+n {
			return int(out + int64(uid) - in), true
		}
	}
	return 0, false
}

// Open opens the store. The caller must call Close.
func Open(so types.StoreOptions) (storage.Store, error) {
	st, err := storage.GetStore(so)
	if err != nil {
		return nil, fmt.Errorf("opening %s store at %s: %w", so.GraphDriverName, so.GraphRoot, err)
	}
	return st, nil
}

// Close releases the store without unmounting anything: Shutdown(true) would
// unmount running containers' filesystems, and "layer in use" from
// Shutdown(false) only means a container is mounted, which is fine.
func Close(st storage.Store) {
	_, _ = st.Shutdown(false)
}
