package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
			st, _, diskQuota, err := g.openStoreQuota(cmd.Context(), p, !dryRun, true)
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
			if diskQuota != nil {
				// Read before entering the user namespace (openStoreQuota).
				job.Quota = func(string) (quota.Usage, error) { return diskQuota.Result() }
			}
			events, closeEvents := g.eventSource(cmd.Context(), p, socket)
			defer closeEvents()
			job.Events = events
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
			if len(rep.Refused) > 0 {
				return &exitError{code: 1, msg: "prune: " + rep.Summary}
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
	f.StringVar(&socket, "podman-socket", "", "podman API socket for container events (default: policy volumes.podman_socket, then podman's; none answering: the podman command)")
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

// eventSource is where prune reads podman's container create/start events
// (the only trace of a `podman run --rm`): the API of a podman socket that
// answers (--podman-socket, else [volumes] podman_socket, else podman's
// default one when it serves the same store), else the host's podman
// command, which reads podman's event log whatever its backend; nil when
// there is no podman at all. release frees the API client.
func (g *globals) eventSource(ctx context.Context, p *policy.Policy, socket string) (src lastuse.EventSource, release func()) {
	if socket == "" {
		socket = p.Volumes.PodmanSocket
	}
	o := g.podmanConnectOptions(ctx, p, socket)
	o.NoStart = true
	o.Timeout = 30 * time.Second
	conn, err := podmanapi.Connect(ctx, o)
	if err == nil {
		return lastuse.PodmanEvents{Client: conn.Client}, func() { _ = conn.Close() }
	}
	log := g.logger()
	if socket != "" {
		log.Warn("podman API socket does not answer; reading events with the podman command", "error", err)
	} else {
		log.Debug("no podman API socket; reading events with the podman command", "error", err)
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		log.Debug("no podman command: last use is recorded from containers only", "error", err)
		return nil, func() {}
	}
	return lastuse.PodmanCLI{Bin: bin, Args: g.podmanStoreArgs(p)}, func() {}
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
	for _, e := range r.Refused {
		fmt.Fprintf(w, "refused: %s\n", e)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "error: %s\n", e)
	}
	fmt.Fprintln(w, r.Summary)
}
