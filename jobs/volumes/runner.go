package volumes

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/volumes/volumesspec"
)

// Entry is the volumes job as the command line lists it: its descriptor and
// its runner.
var Entry = jobenv.Job{Spec: volumesspec.Descriptor, Runner: runner}

// runner is `stowage run volumes`: remove unused Podman volumes the policy
// lets go, through podman's REST API.
var runner = jobenv.Runner{
	Short: "Remove unused (dangling) Podman volumes the policy lets go",
	Long: `Remove dangling Podman volumes through podman's REST API: by default only
anonymous volumes older than [volumes] min_age without a keep label. Podman's
socket is [volumes] podman_socket, else podman's default one; when none answers
a private "podman system service" is started for the run. A volume a container
starts using meanwhile is refused by podman and kept.`,
	TextFormat: "table",
	DryRunHelp: "print the plan, remove nothing",
	Command:    command,
}

func command(*pflag.FlagSet) jobenv.RunFunc {
	return func(ctx context.Context, env *jobenv.Env) (*jobenv.Output, error) {
		p := env.Policy
		conn, err := env.Podman(ctx, jobenv.PodmanRequest{MayStart: true, Timeout: p.Schedule.RunTimeout.Duration})
		if err != nil {
			return nil, fmt.Errorf("run volumes: %w", err)
		}
		defer conn.Close()
		r, err := Run(ctx, conn, p.Volumes, Options{DryRun: env.DryRun, Logger: env.Log, Clock: env.Clock})
		r.PodmanSocket, r.PodmanStarted = conn.Socket(), conn.Started
		out := &jobenv.Output{Report: r, Text: func(w io.Writer) error { return writeTable(w, r) }}
		if err != nil {
			return out, fmt.Errorf("run volumes: %w", err)
		}
		return out, nil
	}
}

// writeTable prints the report for people.
func writeTable(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tACTION\tSIZE\tCREATED\tREASON")
	action := "removed"
	if r.DryRun {
		action = "would remove"
	}
	row := func(it Item, act string) {
		why := it.Reason
		if it.Detail != "" {
			why += " (" + it.Detail + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Name, act, report.HumanSize(it.Bytes), it.Created.Format("2006-01-02 15:04"), why)
	}
	for _, it := range r.Removed {
		row(it, action)
	}
	for _, it := range r.Kept {
		row(it, "kept")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s (podman %s)\n", r.Summary, r.PodmanVersion)
	return err
}
