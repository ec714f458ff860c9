// Package storeopen resolves and opens the containers/storage store the way
// podman does: storage.conf (system or per-user), command-line overrides, an
// explicit graph driver, and the rootless user namespace when it is needed.
package storeopen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/unshare"
	"go.podman.io/storage/types"
)

// Options are the user's overrides, with podman's flag names and meaning.
// Empty fields fall back to the policy's [storage] table, then storage.conf.
type Options struct {
	GraphRoot  string   // --root
	RunRoot    string   // --runroot
	Driver     string   // --storage-driver
	DriverOpts []string // --storage-opt (repeatable)
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

// Resolve returns the store options podman would use, with o's overrides
// applied and the graph driver always named explicitly.
func Resolve(o Options) (types.StoreOptions, error) {
	// LoadStoreOptions (not the cached DefaultStoreOptions) so a daemon reload
	// or a test that changes CONTAINERS_STORAGE_CONF sees the new file.
	so, err := types.LoadStoreOptions(types.LoadOptions{})
	if err != nil {
		return types.StoreOptions{}, fmt.Errorf("reading storage.conf: %w", err)
	}
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
		so.GraphDriverOptions = o.DriverOpts
	}
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
func EnterUserNamespace() {
	unshare.MaybeReexecUsingUserNamespace(false)
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
