package quadlet

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.podman.io/storage/pkg/unshare"
)

// Layout names the roots podman's quadlet generator searches. Tests point
// it at a temporary tree; DefaultLayout gives the real one.
type Layout struct {
	Temp   string // /run/containers/systemd
	Admin  string // /etc/containers/systemd
	Distro string // /usr/share/containers/systemd
	// RuntimeDir and ConfigDir are $XDG_RUNTIME_DIR and $XDG_CONFIG_HOME
	// (or ~/.config); "" when unset. Used for users only.
	RuntimeDir, ConfigDir string
}

// DefaultLayout returns the directories podman uses on this host, taking
// the user's from the environment as podman's generator does.
func DefaultLayout() Layout {
	l := Layout{Temp: "/run/containers/systemd", Admin: "/etc/containers/systemd", Distro: "/usr/share/containers/systemd"}
	if r, ok := os.LookupEnv("XDG_RUNTIME_DIR"); ok {
		l.RuntimeDir = r
	}
	if c, err := os.UserConfigDir(); err == nil {
		l.ConfigDir = c
	}
	return l
}

// SystemDirs returns the search path of the system generator (quadlet
// without -user): /run, /etc and /usr/share containers/systemd with all
// their subdirectories, except /etc/containers/systemd/users, in podman's
// order. Missing directories are listed too; reading them is a no-op.
func (l Layout) SystemDirs() []string {
	s := newSearch()
	adminUsers := resolve(filepath.Join(l.Admin, "users"))
	notUsers := func(p string) bool { return !strings.HasPrefix(p, adminUsers) }
	s.walk(l.Temp, notUsers)
	s.walk(l.Admin, notUsers)
	s.walk(l.Distro, notUsers)
	return s.dirs
}

// UserDirs returns the search path of the user generator (quadlet -user)
// for uid: $XDG_RUNTIME_DIR/containers/systemd, $XDG_CONFIG_HOME (or
// ~/.config)/containers/systemd, then /etc/containers/systemd/users (its
// non-numeric subdirectories) and users/UID, then podman 6's
// /usr/share/containers/systemd/users and users/UID, each with its
// subdirectories. Podman before 6.0 does not read the /usr/share ones;
// listing them keeps more images, never fewer.
func (l Layout) UserDirs(uid int) []string {
	s := newSearch()
	if l.RuntimeDir != "" {
		s.walk(filepath.Join(l.RuntimeDir, "containers", "systemd"), nil)
	}
	if l.ConfigDir != "" {
		s.walk(filepath.Join(l.ConfigDir, "containers", "systemd"), nil)
	}
	adminUsers := resolve(filepath.Join(l.Admin, "users"))
	depth := len(strings.Split(adminUsers, string(os.PathSeparator)))
	// Under /etc/containers/systemd/users skip the numeric (other users')
	// directories; podman applies this to the /etc tree only.
	nonNumeric := func(p string) bool {
		if !strings.HasPrefix(p, adminUsers) {
			return true
		}
		parts := strings.Split(p, string(os.PathSeparator))
		if len(parts) <= depth {
			return len(parts) == depth
		}
		return !isDigits(parts[depth])
	}
	for _, base := range []string{l.Admin, l.Distro} {
		s.walk(filepath.Join(base, "users"), nonNumeric)
		s.walk(filepath.Join(base, "users", strconv.Itoa(uid)), nil)
	}
	return s.dirs
}

// ExpandDirs returns dirs with all their subdirectories, as podman does
// for QUADLET_UNIT_DIRS (no filtering).
func ExpandDirs(dirs []string) []string {
	s := newSearch()
	for _, d := range dirs {
		s.walk(d, nil)
	}
	return s.dirs
}

// search collects directories in podman's order: each root, then its
// subdirectories depth first in name order, symlinks resolved, each
// directory once, drop-in directories ("*.d") not entered.
type search struct {
	dirs    []string
	visited map[string]bool
}

func newSearch() *search { return &search{visited: map[string]bool{}} }

// walk adds p and its subdirectories. keep filters resolved paths (nil
// keeps all). A path that cannot be resolved is still listed, so that
// loading it reports why (or finds nothing when it does not exist).
func (s *search) walk(p string, keep func(string) bool) {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		s.add(p)
		return
	}
	if s.visited[r] || strings.HasSuffix(r, ".d") || keep != nil && !keep(r) {
		return
	}
	if fi, err := os.Stat(r); err != nil || !fi.IsDir() {
		return
	}
	s.add(r)
	entries, err := os.ReadDir(r)
	if err != nil {
		return // loading the directory reports the error
	}
	for _, e := range entries {
		s.walk(filepath.Join(r, e.Name()), keep)
	}
}

func (s *search) add(p string) {
	s.dirs = append(s.dirs, p)
	s.visited[p] = true
}

// resolve returns p with symlinks resolved, or p when that fails.
func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// SearchPath returns the directories to read Quadlet units from: dirs
// (given by the user) with their subdirectories, as podman treats
// QUADLET_UNIT_DIRS, or else the search path of podman's system or user
// quadlet generator.
func SearchPath(dirs []string, system bool) []string {
	if len(dirs) > 0 {
		return ExpandDirs(dirs)
	}
	if system {
		return SystemDirs()
	}
	uid := unshare.GetRootlessUID()
	if uid < 0 {
		uid = os.Getuid()
	}
	return UserDirs(uid)
}
