package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/lastuse"
	"github.com/stowage/stowage/jobs/podmanapi"
	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/prune/quadlet"
	"github.com/stowage/stowage/jobs/prune/quota"
	"github.com/stowage/stowage/jobs/storeopen"
	"github.com/stowage/stowage/policy"
)

// newRunPruneCmd is `stowage run prune [--dry-run] [--format json]`.
func newRunPruneCmd(g *globals) *cobra.Command {
	var (
		dryRun      bool
		format      string
		now         string
		quadletDirs []string
		socket      string
	)
	c := &cobra.Command{
		Use:   "prune",
		Short: "Remove dangling, unused and least recently used images within the policy's limits",
		Long: `Plan which images and orphan layers to remove (dangling, orphan, unused_for,
quota/LRU), never touching images in use, read-only, kept, pinned, referenced by
Quadlet units, the newest keep_last of a repository or younger than min_age;
then apply the plan, re-checking each removal under the storage lock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			clock := time.Now
			if now != "" {
				t, err := time.Parse(time.RFC3339, now)
				if err != nil {
					return fmt.Errorf("--now: %w", err)
				}
				clock = func() time.Time { return t }
			}
			st, _, err := g.openStore(p, !dryRun)
			if err != nil {
				return err
			}
			defer storeopen.Close(st)
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			job := &prune.Job{
				Store: st, State: db, Policy: p.Prune, Now: clock, Log: g.logger(),
				QuadletDirs: quadletSearchPath(quadletDirs, g.systemScope()),
			}
			if !g.systemScope() {
				uid := os.Getuid() // inside the user namespace the kernel maps it back
				job.Quota = func(path string) (quota.Usage, error) { return quota.Get(path, uid) }
			}
			if sock := podmanSocket(socket, p); sock != "" {
				cl := podmanapi.New(sock, 30*time.Second)
				defer cl.Close()
				job.Events = lastuse.PodmanEvents{Client: cl}
			}
			if format == "text" && isTerminal(os.Stderr) {
				job.Progress = os.Stderr
			}
			rep, err := job.Run(cmd.Context(), dryRun)
			if err != nil {
				return err
			}
			if format == "json" {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printPruneText(cmd, rep)
			}
			if len(rep.Errors) > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("prune: %d removals failed", len(rep.Errors))}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "print the plan without removing anything")
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringVar(&now, "now", "", "evaluate ages as of this RFC 3339 time (for tests)")
	f.StringArrayVar(&quadletDirs, "quadlet-dir", nil, "Quadlet unit directory to scan, repeatable (default: podman's)")
	f.StringVar(&socket, "podman-socket", "", "podman API socket for container events (default: policy volumes.podman_socket, then podman's)")
	_ = f.MarkHidden("now")
	return c
}

// quadletSearchPath returns the directories to read Quadlet units from:
// dirs (from --quadlet-dir) with their subdirectories, as podman treats
// QUADLET_UNIT_DIRS, or else the search path of podman's system or user
// quadlet generator.
func quadletSearchPath(dirs []string, system bool) []string {
	if len(dirs) > 0 {
		return quadlet.ExpandDirs(dirs)
	}
	if system {
		return quadlet.SystemDirs()
	}
	uid := unshare.GetRootlessUID()
	if uid < 0 {
		uid = os.Getuid()
	}
	return quadlet.UserDirs(uid)
}

// podmanSocket returns the podman API socket to read events from, or ""
// when none is there (the last-use record then relies on container scans).
func podmanSocket(flag string, p *policy.Policy) string {
	cands := []string{flag, p.Volumes.PodmanSocket}
	if flag == "" && p.Volumes.PodmanSocket == "" {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && (os.Getuid() != 0 || unshare.IsRootless()) {
			cands = append(cands, filepath.Join(x, "podman", "podman.sock"))
		} else {
			cands = append(cands, "/run/podman/podman.sock")
		}
	}
	for _, c := range cands {
		if c == "" {
			continue
		}
		if fi, err := os.Stat(c); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return c
		}
	}
	return ""
}

// isTerminal reports whether f is a terminal (progress lines go there only).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func printPruneText(cmd *cobra.Command, r *prune.Report) {
	w := cmd.OutOrStdout()
	verb := "removed"
	if r.DryRun {
		verb = "would remove"
	}
	for _, it := range r.Removed {
		kind := "image"
		if it.Layer {
			kind = "layer"
		}
		fmt.Fprintf(w, "%s %s %.12s %v %s (%s, total %s)\n", verb, kind, it.ID, it.Names, it.Reason,
			units.BytesSize(float64(it.Bytes)), units.BytesSize(float64(it.Cumulative)))
	}
	for _, it := range r.Kept {
		fmt.Fprintf(w, "kept %.12s %v: %s %s\n", it.ID, it.Names, it.Reason, it.Detail)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	fmt.Fprintln(w, r.Summary)
}
