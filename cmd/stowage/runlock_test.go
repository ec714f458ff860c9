package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/test/testenv"
)

// TestRunLock: while another process holds a job's run lock, a real run of
// that job is refused at once; a dry run and other jobs are not affected.
func TestRunLock(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[prune]\nmin_free = \"0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(job string, extra ...string) (string, error) {
		args := append([]string{"--user", "--state-dir", state, "--policy", pol, "--root", filepath.Join(dir, "root"),
			"--runroot", filepath.Join(dir, "runroot"), "--storage-driver", "vfs", "run", job, "--format", "json"}, extra...)
		return testenv.RunErr(nil, bin, args...)
	}
	if out, err := run("prune"); err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	// Hold the lock as another run would.
	f, err := os.OpenFile(filepath.Join(state, "run-prune.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if out, err := run("prune"); err == nil || !strings.Contains(err.Error(), "another run of this job is in progress") {
		t.Fatalf("run while locked: %v\n%s", err, out)
	}
	if out, err := run("prune", "--dry-run"); err != nil {
		t.Fatalf("dry run while locked: %v\n%s", err, out)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if out, err := run("prune"); err != nil {
		t.Fatalf("run after unlock: %v\n%s", err, out)
	}
}
