package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/podmanapi"
)

// newRunCmd is `stowage run JOB`: one job run in this process, the same code
// path the daemon's workers use.
func newRunCmd(g *globals, jobs []jobenv.Job) *cobra.Command {
	c := &cobra.Command{
		Use:   "run JOB",
		Short: "Run one maintenance job now, in this process",
		// One real run of a job at a time, across processes.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkLogFormat(); err != nil {
				return err
			}
			return g.lockRun(cmd)
		},
	}
	for _, j := range jobs {
		c.AddCommand(newJobCmd(g, j))
	}
	return c
}

// newJobCmd is `stowage run NAME [--dry-run] [--format json]` for one job:
// the policy, logger, clock, store, state and podman connection it gets
// (one jobenv.Env), its report printed as JSON or text, and its own flags.
func newJobCmd(g *globals, j jobenv.Job) *cobra.Command {
	r := j.Runner
	var (
		dryRun bool
		format string
	)
	text := r.TextFormat
	if text == "" {
		text = "text"
	}
	c := &cobra.Command{
		Use:   j.Spec.Name,
		Short: r.Short,
		Long:  r.Long,
		Args:  cobra.NoArgs,
	}
	f := c.Flags()
	f.BoolVar(&dryRun, "dry-run", false, r.DryRunHelp)
	f.StringVar(&format, "format", text, "output format: "+text+" or json")
	run := r.Command(f)
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if format != text && format != "json" {
			return fmt.Errorf("--format: want %s or json, got %q", text, format)
		}
		p, err := g.loadPolicy()
		if err != nil {
			return err
		}
		env := &jobenv.Env{
			Policy: p, DryRun: dryRun, System: g.systemScope(), Log: g.logger(), Clock: clock.Real,
			OpenStore: func(ctx context.Context, req jobenv.StoreRequest) (*jobenv.Store, error) {
				st, so, q, err := g.openStoreQuota(ctx, p, req.UserNamespace, req.Quota)
				if err != nil {
					return nil, err
				}
				return &jobenv.Store{Store: st, Options: so, Quota: q}, nil
			},
			State: g.stateDB,
			Podman: func(ctx context.Context, req jobenv.PodmanRequest) (*podmanapi.Conn, error) {
				o := g.podmanConnectOptions(ctx, p, req.Socket)
				o.NoStart = !req.MayStart
				o.Timeout = req.Timeout
				return podmanapi.Connect(ctx, o)
			},
			PodmanArgs: g.podmanStoreArgs(p),
		}
		if format == text && isTerminal(os.Stderr) {
			env.Progress = os.Stderr
		}
		out, runErr := run(cmd.Context(), env)
		if out != nil {
			var err error
			if format == "json" {
				err = writeJSON(cmd.OutOrStdout(), out.Report)
			} else {
				err = out.Text(cmd.OutOrStdout())
			}
			if runErr == nil {
				runErr = err
			}
		}
		return runErr
	}
	return c
}

// isTerminal reports whether f is a terminal (progress lines go there only).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
