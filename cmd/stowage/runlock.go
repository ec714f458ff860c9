package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"
)

// errRunInProgress is returned when another process runs the same job
// (not a dry run) on the same state directory.
var errRunInProgress = errors.New("another run of this job is in progress")

// lockRun takes the job's run lock before a real (non-dry) run: an flock on
// STATE_DIR/run-JOB.lock held until the process exits, so a job is never run
// twice at once — by the daemon's worker and a `stowage run` by hand, or by
// two daemons. Dry runs change nothing and take no lock. The process
// re-executed into the rootless user namespace runs under its parent's
// lock (the parent waits for it).
func (g *globals) lockRun(cmd *cobra.Command) error {
	if dry, err := cmd.Flags().GetBool("dry-run"); err == nil && dry {
		return nil
	}
	if os.Getenv(unshare.UsernsEnvName) != "" {
		return nil
	}
	db, err := g.stateDB()
	if err != nil {
		return err
	}
	path := filepath.Join(filepath.Dir(db.Path()), "run-"+cmd.Name()+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("run lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%s: %w (%s is locked)", cmd.Name(), errRunInProgress, path)
		}
		return fmt.Errorf("run lock %s: %w", path, err)
	}
	g.runLock = f // held (open) until the process exits
	return nil
}
