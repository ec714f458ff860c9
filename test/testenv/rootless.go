package testenv

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RootlessUser is a real non-root account made for one test: a home
// directory, /etc/subuid and /etc/subgid ranges (so rootless podman and
// stowage can build their user namespace with newuidmap), and a private
// XDG_RUNTIME_DIR. It is removed, with its processes and files, when the
// test ends.
type RootlessUser struct {
	Name       string
	UID, GID   int
	Home       string
	RuntimeDir string // XDG_RUNTIME_DIR, 0700, owned by the user
}

// NewRootlessUser creates the account name (make it unique per test, e.g.
// "stwg-prune"). The test must run as root; newuidmap and newgidmap must be
// installed (package uidmap).
func NewRootlessUser(t testing.TB, name string) *RootlessUser {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "useradd", "userdel", "usermod", "newuidmap", "newgidmap")
	if _, err := user.Lookup(name); err == nil {
		// Left over by an interrupted run: start clean.
		removeUser(name)
	}
	// useradd allocates subordinate ranges itself when login.defs has
	// SUB_UID_COUNT (Debian's default); add them explicitly when it did not.
	Run(t, nil, "useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name)
	u := &RootlessUser{Name: name}
	t.Cleanup(u.remove)
	pw, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	u.UID, _ = strconv.Atoi(pw.Uid)
	u.GID, _ = strconv.Atoi(pw.Gid)
	u.Home = pw.HomeDir
	for _, f := range []struct{ file, flag string }{{"/etc/subuid", "--add-subuids"}, {"/etc/subgid", "--add-subgids"}} {
		if !hasSubRange(f.file, name) {
			// A range far above useradd's allocations, unique per UID.
			start := 1_000_000_000 + (u.UID%10_000)*65_536
			Run(t, nil, "usermod", f.flag, fmt.Sprintf("%d-%d", start, start+65_535), name)
		}
	}
	rd, err := os.MkdirTemp("", "stwg-xdg-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rd, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(rd, 0o700); err != nil {
		t.Fatal(err)
	}
	u.RuntimeDir = rd
	return u
}

func hasSubRange(file, name string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+":") {
			return true
		}
	}
	return false
}

// Env is the login environment of the user: HOME, USER, LOGNAME, PATH and
// XDG_RUNTIME_DIR, with nothing inherited from root.
func (u *RootlessUser) Env() []string {
	return []string{
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
		"XDG_RUNTIME_DIR=" + u.RuntimeDir,
		"LANG=C.UTF-8",
	}
}

// Command prepares name args to run as the user (real and effective IDs,
// no supplementary root groups) with Env plus extra, in the home directory.
func (u *RootlessUser) Command(extra []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(u.Env(), extra...)
	cmd.Dir = u.Home
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{uint32(u.GID)}},
	}
	return cmd
}

// RunErr runs a command as the user and returns stdout; the error carries
// stderr.
func (u *RootlessUser) RunErr(extra []string, name string, args ...string) (string, error) {
	cmd := u.Command(extra, name, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s (as %s): %w: %s", name, strings.Join(args, " "), u.Name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Run runs a command as the user and returns stdout; it fails the test on
// error.
func (u *RootlessUser) Run(t testing.TB, extra []string, name string, args ...string) string {
	t.Helper()
	out, err := u.RunErr(extra, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Install copies an executable (e.g. Stowage(t), which lives in a root-only
// temp dir) into the user's home and returns the copy's path.
func (u *RootlessUser) Install(t testing.TB, src string) string {
	t.Helper()
	dir := filepath.Join(u.Home, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, dst} {
		if err := os.Chown(p, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// remove kills the user's leftover processes (rootless podman's pause
// process, conmon), unmounts what its namespaces left, then deletes the
// account with its home, runtime dir and subordinate ranges.
func (u *RootlessUser) remove() {
	for i := 0; i < 20; i++ {
		pids := userPIDs(u.UID)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if u.RuntimeDir != "" {
		_ = os.RemoveAll(u.RuntimeDir)
	}
	removeUser(u.Name)
}

func removeUser(name string) {
	if pw, err := user.Lookup(name); err == nil {
		if uid, err := strconv.Atoi(pw.Uid); err == nil {
			for _, pid := range userPIDs(uid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, _ = RunErr(nil, "userdel", "--remove", "--force", name)
	// Debian's userdel drops the subordinate ranges too; be sure.
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		dropSubRange(f, name)
	}
}

func dropSubRange(file, name string) {
	data, err := os.ReadFile(file)
	if err != nil {
		return
	}
	var keep []string
	changed := false
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if strings.HasPrefix(line, name+":") {
			changed = true
			continue
		}
		if line != "" {
			keep = append(keep, line)
		}
	}
	if changed {
		out := strings.Join(keep, "\n")
		if out != "" {
			out += "\n"
		}
		_ = os.WriteFile(file, []byte(out), 0o644)
	}
}

// userPIDs lists the processes whose real UID is uid.
func userPIDs(uid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
				if f[1] == strconv.Itoa(uid) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}
