package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/service/daemon"
	"github.com/stowage/stowage/service/hoststate"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/worker"
)

// newDaemonCmds are `stowage daemon` and the commands that talk to it.
func newDaemonCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newDaemonCmd(g), newStatusCmd(g), newJobsCmd(g), newTriggerCmd(g), newReportCmd(g), newReloadCmd(g),
	}
}

func newDaemonCmd(g *globals) *cobra.Command {
	var idleExit, settle time.Duration
	var socket string
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the scheduling daemon (started by systemd)",
		Long: `Run the stowage daemon: it schedules the maintenance jobs from the policy's
[schedule] table, runs each as a worker process (stowage run JOB), and serves
the control API on its socket (the systemd socket fd named "control", else
$XDG_RUNTIME_DIR/stowage/stowage.sock or /run/stowage/stowage.sock).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), g, idleExit, settle, socket)
		},
	}
	c.Flags().DurationVar(&idleExit, "idle-exit", 0, "exit after this long without clients, runs or a run due (0 = never)")
	c.Flags().StringVar(&socket, "socket", "", "control socket path when not socket-activated")
	c.Flags().DurationVar(&settle, "deferred-settle", time.Minute, "how long the host must stay off a metered connection or battery before the work deferred for it ([schedule] defer_on_metered, defer_on_battery) is caught up")
	return c
}

func runDaemon(ctx context.Context, g *globals, idleExit, settle time.Duration, socket string) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q: %w", g.logLevel, err)
	}
	// journald when its socket exists, else stderr lines with <N> prefixes.
	h := journal.NewHandler(journal.Options{Level: lvl, Events: g.jobs.EventKinds()})
	log := slog.New(h)
	system := g.systemScope()
	db, err := g.stateDB()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locating own binary: %w", err)
	}
	args, err := g.workerArgs(filepath.Dir(db.Path()), system)
	if err != nil {
		return err
	}
	// Metered connection and battery, from the system bus in both modes. A
	// host without a system bus defers nothing; it is said once, here.
	var host daemon.HostState
	if w, err := hoststate.Open("", log); err != nil {
		log.Warn("not watching for a metered connection or battery", "error", err)
	} else {
		defer w.Close()
		host = w
	}
	d, err := daemon.New(daemon.Options{
		System:   system,
		Version:  version,
		Jobs:     g.jobs,
		IdleExit: idleExit,
		LoadPolicy: func() (*policy.Snapshot, error) {
			return policy.LoadSnapshot(policy.LoadOptions{Path: g.policyPath, System: system})
		},
		Runs:           runs.New(db, 0),
		Spawner:        &worker.Spawner{Exe: exe, GlobalArgs: args, Env: os.Environ(), Logger: log, TailInMessage: h.UsesJournal()},
		Logger:         log,
		SocketPath:     socket,
		State:          db,
		HostState:      host,
		DeferredSettle: settle,
	})
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// workerArgs are the global flags a worker gets: the same store, state
// directory, scope and log level as the daemon. The policy is not among
// them: each worker gets the daemon's snapshot (--policy-fd).
func (g *globals) workerArgs(stateDir string, system bool) ([]string, error) {
	var a []string
	add := func(flag, v string) {
		if v != "" {
			a = append(a, "--"+flag, v)
		}
	}
	add("root", g.store.GraphRoot)
	add("runroot", g.store.RunRoot)
	add("storage-driver", g.store.Driver)
	for _, o := range g.store.DriverOpts {
		add("storage-opt", o)
	}
	add("state-dir", stateDir)
	if system {
		a = append(a, "--system")
	} else {
		a = append(a, "--user")
	}
	add("log-level", g.logLevel)
	return a, nil
}

// clientFlags are the flags of the commands that talk to the daemon.
type clientFlags struct {
	socket  string
	format  string
	timeout time.Duration
}

func (f *clientFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.socket, "socket", "", "daemon control socket (default: by --user/--system)")
	c.Flags().StringVar(&f.format, "format", "text", "output format: text or json")
	c.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up after this long")
}

func (f *clientFlags) client(g *globals) (*client.Client, error) {
	if f.format != "text" && f.format != "json" {
		return nil, fmt.Errorf("invalid --format %q (want text or json)", f.format)
	}
	path := f.socket
	if path == "" {
		var err error
		if path, err = api.SocketPath(g.systemScope()); err != nil {
			return nil, err
		}
	}
	return client.New(path, g.jobs.Names()), nil
}

// call runs fn with a client and a bounded context.
func (f *clientFlags) call(cmd *cobra.Command, g *globals, fn func(context.Context, *client.Client) error) error {
	c, err := f.client(g)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := cmd.Context()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	return fn(ctx, c)
}

func newStatusCmd(g *globals) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's state, policy and jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, g, func(ctx context.Context, c *client.Client) error {
				s, err := c.Status(ctx)
				if err != nil {
					return err
				}
				if f.format == "json" {
					return writeJSON(cmd.OutOrStdout(), s)
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "stowage %s daemon (%s mode), pid %d, up since %s\n", s.Version, s.Mode, s.PID, s.Started.Format(time.RFC3339))
				fmt.Fprintf(w, "state:  %s\n", s.State)
				files := s.PolicyFiles
				if len(files) == 0 {
					files = []string{s.PolicyPath}
				}
				fmt.Fprintf(w, "policy: %s (loaded %s)\n", strings.Join(files, ", "), s.PolicyLoad.Format(time.RFC3339))
				if s.PolicyError != "" {
					fmt.Fprintf(w, "policy error (previous policy in force): %s\n", s.PolicyError)
				}
				if s.StateError != "" {
					fmt.Fprintf(w, "state error: %s\n", s.StateError)
				}
				if s.Bus != "" {
					fmt.Fprintf(w, "bus:    %s\n", s.Bus)
				}
				return printJobs(w, s.Jobs)
			})
		},
	}
	f.register(c)
	return c
}

func newJobsCmd(g *globals) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "jobs",
		Short: "List the scheduled jobs: schedule, next run, last run and outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, g, func(ctx context.Context, c *client.Client) error {
				j, err := c.Jobs(ctx)
				if err != nil {
					return err
				}
				if f.format == "json" {
					return writeJSON(cmd.OutOrStdout(), j)
				}
				return printJobs(cmd.OutOrStdout(), j)
			})
		},
	}
	f.register(c)
	return c
}

func printJobs(w io.Writer, jobs []api.Job) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSCHEDULE\tNEXT RUN\tLAST RUN\tOUTCOME\tSUMMARY")
	for _, j := range jobs {
		next, last, outcome, summary := "-", "-", "-", ""
		if !j.Next.IsZero() {
			next = j.Next.Local().Format("2006-01-02 15:04")
		}
		if j.LastRun != nil {
			last = j.LastRun.Started.Local().Format("2006-01-02 15:04")
			outcome, summary = string(j.LastRun.Outcome), j.LastRun.Summary
			if summary == "" {
				summary = j.LastRun.Error
			}
		}
		if j.Running != "" {
			outcome = "running"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, j.Schedule, next, last, outcome, oneLine(summary))
	}
	return tw.Flush()
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func newTriggerCmd(g *globals) *cobra.Command {
	var f clientFlags
	var dryRun, wait bool
	c := &cobra.Command{
		Use:   "trigger JOB",
		Short: "Ask the daemon to run a job now",
		Long: `Ask the daemon to run a job now and print the run id. With --wait, wait for
the run to end and print its report; the exit status is 1 if the run failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && !cmd.Flags().Changed("timeout") {
				f.timeout = 0 // runs may take long; the daemon's run_timeout bounds them
			}
			return f.call(cmd, g, func(ctx context.Context, c *client.Client) error {
				r, err := c.Trigger(ctx, args[0], dryRun)
				if err != nil {
					return fmt.Errorf("trigger: %w", err)
				}
				if !wait {
					if f.format == "json" {
						return writeJSON(cmd.OutOrStdout(), r)
					}
					fmt.Fprintln(cmd.OutOrStdout(), r.ID)
					return nil
				}
				if r, err = c.Wait(ctx, r.ID); err != nil {
					return err
				}
				return printRun(cmd.OutOrStdout(), r, f.format)
			})
		},
	}
	f.register(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "plan only: change nothing")
	c.Flags().BoolVar(&wait, "wait", false, "wait for the run to end and print its report")
	return c
}

func newReportCmd(g *globals) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "report RUN|JOB",
		Short: "Show a run's report (by run id, or the newest run of a job)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return f.call(cmd, g, func(ctx context.Context, c *client.Client) error {
				var r *api.Run
				var err error
				if args[0] == "" {
					return errors.New("report: run id or job name is empty")
				}
				if g.isJob(args[0]) {
					r, err = c.Latest(ctx, args[0])
				} else {
					r, err = c.Run(ctx, args[0])
				}
				if err != nil {
					return err
				}
				return printRun(cmd.OutOrStdout(), r, f.format)
			})
		},
	}
	f.register(c)
	return c
}

func (g *globals) isJob(s string) bool {
	_, ok := g.jobs.Lookup(s)
	return ok
}

// printRun prints a finished run; a failed run exits 1.
func printRun(w io.Writer, r *api.Run, format string) error {
	if format == "json" {
		if err := writeJSON(w, r); err != nil {
			return err
		}
	} else if err := r.WriteText(w); err != nil {
		return err
	}
	if r.Outcome.Done() && r.Outcome != api.OutcomeSucceeded {
		return &exitError{code: 1}
	}
	return nil
}

func newReloadCmd(g *globals) *cobra.Command {
	var f clientFlags
	c := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon re-read its policy (an invalid policy keeps the old one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.call(cmd, g, func(ctx context.Context, c *client.Client) error {
				res, err := c.Reload(ctx)
				var ce *client.Error
				if err != nil && !(errors.As(err, &ce) && res.Error != "") {
					return err
				}
				if f.format == "json" {
					if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
						return err
					}
				} else if res.OK {
					fmt.Fprintln(cmd.OutOrStdout(), "policy reloaded")
				}
				if !res.OK {
					return fmt.Errorf("policy rejected, previous policy still in force: %s", res.Error)
				}
				return nil
			})
		},
	}
	f.register(c)
	return c
}
