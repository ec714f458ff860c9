package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/agent"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/daemon"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/service/notify"
)

// agentStateSubdir is the agent's own state directory under the user's
// stowage state directory: its notification memory is about the system
// store, so it must not mix with a user daemon's (same keys, other store).
const agentStateSubdir = "agent"

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Show the system service's findings as desktop notifications (runs in the user's session)",
		Long: `Run the session agent of the system service: it listens on the system bus
for the system daemon's finished runs, fetches each run's report and shows its
new findings as desktop notifications on the user's session bus, under the
[notify] section of the user's policy ($XDG_CONFIG_HOME/stowage/stowage.toml,
else the system policy, else the defaults; SIGHUP re-reads it). Notification
actions (free space, pull an update, show the report) go back to the system
service, which authorizes them (root or polkit's io.github.stowage.manage).
What was shown is remembered in $XDG_STATE_HOME/stowage/agent (or
--state-dir), so a finding is not shown twice. The stowage-agent user unit or
the XDG autostart entry starts it with the graphical session.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), g)
		},
	}
}

func runAgent(ctx context.Context, g *globals) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q: %w", g.logLevel, err)
	}
	log := slog.New(journal.NewHandler(journal.Options{Level: lvl, Events: g.jobs.EventKinds()}))
	// The session first: without one there is nothing to do, nor to create.
	session, err := dbusapi.Connect(false)
	if err != nil {
		return fmt.Errorf("agent: the session bus is needed to show notifications: %w", err)
	}
	defer session.Close()
	dir := g.stateDir
	if dir == "" {
		base, err := state.DefaultDir(false) // the user's, even for root at a desktop
		if err != nil {
			return err
		}
		dir = filepath.Join(base, agentStateSubdir)
	}
	db, err := state.Open(dir)
	if err != nil {
		return err
	}
	if err := db.Check(); err != nil {
		return err
	}

	a, err := agent.New(agent.Options{
		ConnectSystem: func() (*dbus.Conn, error) { return dbusapi.Connect(true) },
		Render:        renderRunText,
		Logger:        log,
		State:         db,
	})
	if err != nil {
		return err
	}
	// The agent carries out its notifications' actions over the system
	// bus, where the system daemon authorizes them.
	pol := agentNotifyPolicy(g, log)
	n, err := notify.New(notify.Options{Conn: session, State: db, Policy: pol, Logger: log, Actor: a, Events: g.jobs.EventKinds()})
	if err != nil {
		return err
	}
	defer n.Close()
	tn := &topicNotifier{n: n, pol: pol}

	// The session is over when its bus goes: stop with it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-session.Context().Done():
			cancel(errors.New("agent: the session bus closed"))
		case <-ctx.Done():
		}
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				tn.SetPolicy(agentNotifyPolicy(g, log))
				log.Info("policy re-read")
			case <-ctx.Done():
				return
			}
		}
	}()
	// Last: owning the name tells systemd (Type=dbus) the agent is up.
	if err := agent.ClaimSession(session); errors.Is(err, agent.ErrAlreadyRunning) {
		log.Info("not starting: " + err.Error())
		return nil
	} else if err != nil {
		return err
	}
	// Long-lived in every session: drop what only start-up touched, once
	// the agent is connected and waiting.
	go func() {
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
			return
		}
		if kib, err := daemon.ReleaseStartupMemory(); err != nil {
			log.Debug("start-up memory not released", "error", err)
		} else {
			log.Debug("start-up memory released", "kib", kib)
		}
	}()
	log.Info("agent started", "state", db.Path())
	if err := a.Run(ctx, tn); err != nil {
		return err
	}
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

// agentNotifyPolicy is the [notify] section of the user's policy (the
// standard user lookup: --policy, $XDG_CONFIG_HOME/stowage/stowage.toml,
// else the system policy, whose [notify] is the administrator's default for
// every desktop). A policy that does not load leaves the built-in defaults:
// a typo in a user's file must not silence the system's findings.
func agentNotifyPolicy(g *globals, log *slog.Logger) policy.Notify {
	p, files, err := policy.Load(policy.LoadOptions{Path: g.policyPath, System: false})
	if err != nil {
		log.Warn("policy not loaded; using the default [notify] settings", "error", err)
		return policy.Default().Notify
	}
	log.Debug("policy loaded", "files", fmt.Sprint(files))
	return p.Notify
}

// topicNotifier passes a run's findings to the notifier without those
// the user's [notify] topics leave out.
type topicNotifier struct {
	n   *notify.Notifier
	mu  sync.Mutex
	pol policy.Notify
}

// NotifyRun implements agent.RunNotifier.
func (t *topicNotifier) NotifyRun(ctx context.Context, job, runID string, evs []report.Event) (*notify.Sent, error) {
	t.mu.Lock()
	pol := t.pol
	t.mu.Unlock()
	return t.n.NotifyRun(ctx, job, runID, daemon.WantedEvents(pol, job, evs))
}

// SetPolicy applies a re-read [notify] section.
func (t *topicNotifier) SetPolicy(p policy.Notify) {
	t.mu.Lock()
	t.pol = p
	t.mu.Unlock()
	t.n.SetPolicy(p)
}

// renderRunText is what `stowage report RUN` prints for a run.
func renderRunText(w io.Writer, r *api.Run) error {
	err := printRun(w, r, "text")
	var ec exitCoder
	if errors.As(err, &ec) {
		return nil // a failed run's report renders all the same
	}
	return err
}
