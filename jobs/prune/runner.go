package prune

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/pflag"

	"github.com/stowage/stowage/jobs/prune/prunespec"
	"github.com/stowage/stowage/jobs/prune/quadlet"
	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/jobs/shared/storeopen"
)

// Entry is the prune job as the command line lists it: its descriptor and
// its runner.
var Entry = jobenv.Job{Spec: prunespec.Descriptor, Runner: runner}

// runner is `stowage run prune`.
var runner = jobenv.Runner{
	Short: "Remove dangling, unused and least recently used images within the policy's limits",
	Long: `Plan which images and orphan layers to remove (dangling, orphan, unused_for,
quota/LRU), never touching images in use, read-only, kept, pinned, referenced by
Quadlet units, the newest keep_last of a repository or younger than min_age;
then apply the plan, re-checking each removal under the storage lock.`,
	DryRunHelp: "print the plan without removing anything",
	Command:    command,
}

func command(f *pflag.FlagSet) jobenv.RunFunc {
	var (
		now         string
		quadletDirs []string
		socket      string
	)
	f.StringVar(&now, "now", "", "evaluate ages as of this RFC 3339 time (for tests)")
	f.StringArrayVar(&quadletDirs, "quadlet-dir", nil, "Quadlet unit directory to scan, repeatable (default: podman's)")
	f.StringVar(&socket, "podman-socket", "", "podman API socket for container events (default: policy volumes.podman_socket, then podman's; none answering: the podman command)")
	_ = f.MarkHidden("now")
	return func(ctx context.Context, env *jobenv.Env) (*jobenv.Output, error) {
		p := env.Policy
		clk := env.Clock
		if now != "" {
			t, err := time.Parse(time.RFC3339, now)
			if err != nil {
				return nil, fmt.Errorf("--now: %w", err)
			}
			clk = clock.At(t)
		}
		st, err := env.OpenStore(ctx, jobenv.StoreRequest{UserNamespace: prunespec.Descriptor.UserNamespace(p, env.DryRun), Quota: true})
		if err != nil {
			return nil, err
		}
		defer storeopen.Close(st.Store)
		db, err := env.State()
		if err != nil {
			return nil, err
		}
		job := &Job{
			Store: st.Store, State: db, Policy: p.Prune, Clock: clk, Log: env.Log,
			QuadletDirs: quadlet.SearchPath(quadletDirs, env.System),
			Progress:    env.Progress,
		}
		if st.Quota != nil {
			// Read before entering the user namespace (OpenStore).
			job.Quota = func(string) (quota.Usage, error) { return st.Quota.Result() }
		}
		events, closeEvents := eventSource(ctx, env, socket)
		defer closeEvents()
		job.Events = events
		rep, err := job.Run(ctx, env.DryRun)
		if err != nil {
			return nil, err
		}
		out := &jobenv.Output{Report: rep, Text: func(w io.Writer) error { return printText(w, rep) }}
		if len(rep.Refused) > 0 {
			return out, fmt.Errorf("prune: %s", rep.Summary)
		}
		if len(rep.Errors) > 0 {
			return out, fmt.Errorf("prune: %d removals failed", len(rep.Errors))
		}
		return out, nil
	}
}

// eventSource is where prune reads podman's container create/start events
// (the only trace of a `podman run --rm`): the API of a podman socket that
// answers (socket, else the one jobenv.PodmanRequest finds), else the host's podman command, which reads podman's event log
// whatever its backend; nil when there is no podman at all. release frees
// the API client.
func eventSource(ctx context.Context, env *jobenv.Env, socket string) (src lastuse.EventSource, release func()) {
	conn, err := env.Podman(ctx, jobenv.PodmanRequest{Socket: socket, Timeout: 30 * time.Second})
	if err == nil {
		return lastuse.PodmanEvents{Client: conn.Client}, func() { _ = conn.Close() }
	}
	log := env.Log
	if socket != "" || env.Policy.Volumes.PodmanSocket != "" {
		// A socket that was asked for and does not answer is worth a warning.
		log.Warn("podman API socket does not answer; reading events with the podman command", "error", err)
	} else {
		log.Debug("no podman API socket; reading events with the podman command", "error", err)
	}
	bin, err := exec.LookPath("podman")
	if err != nil {
		log.Debug("no podman command: last use is recorded from containers only", "error", err)
		return nil, func() {}
	}
	return lastuse.PodmanCLI{Bin: bin, Args: env.PodmanArgs}, func() {}
}

func printText(w io.Writer, r *Report) error {
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
	_, err := fmt.Fprintln(w, r.Summary)
	return err
}
