package storeopen

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.podman.io/storage/pkg/unshare"
	"go.podman.io/storage/types"
)

// cacheVersion changes whenever the fingerprint or the file format does.
const cacheVersion = "stowage-podman-store/1"

// DefaultCacheDir is where podman's answer is cached: /run/stowage for
// root, $XDG_RUNTIME_DIR/stowage for a user ("" when unset: no cache).
// Both are cleared at boot.
func DefaultCacheDir() string {
	if !unshare.IsRootless() {
		return "/run/stowage"
	}
	if rd := os.Getenv("XDG_RUNTIME_DIR"); rd != "" {
		return filepath.Join(rd, "stowage")
	}
	return ""
}

// cacheFile names the cache file for o: one per set of overrides, so that
// a command run with --root does not evict the default store's entry.
func (r Resolver) cacheFile(o Options) (string, error) {
	dir := r.CacheDir
	if dir == "" {
		dir = DefaultCacheDir()
	}
	if dir == "" {
		return "", nil
	}
	key, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("cache key: %w", err)
	}
	sum := sha256.Sum256(key)
	return filepath.Join(dir, "podman-store-"+hex.EncodeToString(sum[:8])+".json"), nil
}

// cacheEntry is a cache file's content.
type cacheEntry struct {
	Fingerprint string     `json:"fingerprint"` // of every input podman's answer depends on
	Database    string     `json:"database"`    // identity of podman's database files
	Info        PodmanInfo `json:"info"`
}

// fingerprintEnv are the variables podman's or containers/storage's
// choice of store depends on (PATH: a rootless default may name
// fuse-overlayfs as the mount program).
var fingerprintEnv = []string{
	"CONTAINERS_STORAGE_CONF", "CONTAINERS_STORAGE_CONF_OVERRIDE",
	"CONTAINERS_CONF", "CONTAINERS_CONF_OVERRIDE",
	"STORAGE_DRIVER", "STORAGE_OPTS",
	"XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "HOME", "PATH",
	unshare.UsernsEnvName, "_CONTAINERS_ROOTLESS_UID",
}

// fingerprint describes every input of podman's answer: the podman binary,
// the user, the environment, the overrides and the state of every
// storage.conf and containers.conf candidate and drop-in directory that any
// podman version reads. Any change makes a different fingerprint.
func fingerprint(podman string, o Options) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\npodman %s %s\n", cacheVersion, podman, statLine(podman))
	fmt.Fprintf(&b, "uid %d euid %d rootless %t %d\n", os.Getuid(), os.Geteuid(), unshare.IsRootless(), unshare.GetRootlessUID())
	for _, name := range fingerprintEnv {
		v, ok := os.LookupEnv(name)
		fmt.Fprintf(&b, "env %s %t %q\n", name, ok, v)
	}
	flags, err := json.Marshal(o)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	fmt.Fprintf(&b, "flags %s\n", flags)
	for _, p := range configCandidates() {
		fmt.Fprintf(&b, "file %s %s\n", p, statLine(p))
		ents, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, e := range ents {
			q := filepath.Join(p, e.Name())
			fmt.Fprintf(&b, "file %s %s\n", q, statLine(q))
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:]), nil
}

// configCandidates lists storage.conf and containers.conf files and drop-in
// directories in every place podman 4.x to 6.x may read them.
func configCandidates() []string {
	uid := strconv.Itoa(unshare.GetRootlessUID())
	dirs := []string{"/usr/share/containers", "/etc/containers"}
	if ch, ok := os.LookupEnv("XDG_CONFIG_HOME"); ok && ch != "" {
		dirs = append(dirs, filepath.Join(ch, "containers"))
	}
	if home, err := unshare.HomeDir(); err == nil && home != "" {
		dirs = append(dirs, filepath.Join(home, ".config", "containers"))
	}
	var out []string
	for _, name := range []string{"storage", "containers"} {
		for _, d := range dirs {
			base := filepath.Join(d, name)
			out = append(out, base+".conf", base+".conf.d",
				base+".rootful.conf.d", base+".rootless.conf.d",
				filepath.Join(base+".rootless.conf.d", uid))
		}
	}
	for _, env := range []string{"CONTAINERS_STORAGE_CONF", "CONTAINERS_STORAGE_CONF_OVERRIDE", "CONTAINERS_CONF", "CONTAINERS_CONF_OVERRIDE"} {
		if p := os.Getenv(env); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// statLine identifies a file's current version: existence, size, mode,
// device, inode, mtime and ctime (an editor's rename-over changes the inode
// and ctime even within one mtime tick).
func statLine(p string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return "absent:" + err.Error()
	}
	return fmt.Sprintf("size=%d mode=%o dev=%d ino=%d mtime=%d.%09d ctime=%d.%09d",
		st.Size, st.Mode, st.Dev, st.Ino, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
}

// databaseState identifies podman's database files (BoltDB up to 4.x,
// SQLite from 5.0) under the graphroots podman reported and the library
// read. podman takes graphroot, runroot and driver from its database when
// the user did not set them, so a recreated database (podman system reset)
// may change its answer. Inodes, not mtimes: the database is written on
// every container change but keeps its inode.
func databaseState(info PodmanInfo, lib *types.StoreOptions) string {
	roots := []string{info.Store.GraphRoot}
	if lib != nil && !slices.Contains(roots, lib.GraphRoot) {
		roots = append(roots, lib.GraphRoot)
	}
	var b strings.Builder
	for _, root := range roots {
		for _, name := range []string{"bolt_state.db", "db.sql"} {
			p := filepath.Join(root, "libpod", name)
			var st syscall.Stat_t
			if err := syscall.Stat(p, &st); err != nil {
				fmt.Fprintf(&b, "%s absent\n", p)
				continue
			}
			fmt.Fprintf(&b, "%s dev=%d ino=%d\n", p, st.Dev, st.Ino)
		}
	}
	return b.String()
}

// readCache returns the cached answer when the file exists, belongs to
// this user, is not writable by others and was made for exactly this
// fingerprint and database; anything else is a miss.
func readCache(path, fp string, lib *types.StoreOptions) (PodmanInfo, bool) {
	f, err := os.Open(path)
	if err != nil {
		return PodmanInfo{}, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PodmanInfo{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 || !fi.Mode().IsRegular() {
		return PodmanInfo{}, false
	}
	var e cacheEntry
	if err := json.NewDecoder(f).Decode(&e); err != nil {
		return PodmanInfo{}, false
	}
	if e.Fingerprint != fp || e.Database != databaseState(e.Info, lib) {
		return PodmanInfo{}, false
	}
	if e.Info.Store.GraphRoot == "" || e.Info.Store.RunRoot == "" || e.Info.Store.GraphDriverName == "" {
		return PodmanInfo{}, false
	}
	return e.Info, true
}

// writeCache stores podman's answer atomically (temp file + rename) in a
// directory only this user can write.
func writeCache(path, fp string, info PodmanInfo, lib *types.StoreOptions) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	data, err := json.Marshal(cacheEntry{Fingerprint: fp, Database: databaseState(info, lib), Info: info})
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".podman-store-*.tmp")
	if err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: ENOENT, ignored
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}
