// Package agent is the session agent of the system service (`stowage
// agent`): it runs as the desktop user, listens on the system bus for the
// system daemon's JobFinished signals, fetches each finished run's report
// (GetReport) and hands its findings to a notifier on the user's session
// bus, so the notifier's own rules (coalescing per topic, urgency, never
// twice) apply per user. It carries out notification actions over the system
// bus (Actor): Prune → RunJob("prune", false), Pull → PullImage(ref),
// Report → GetReport. The daemon authorizes those (root or polkit).
//
// The system daemon may exit when idle and be started again by D-Bus
// activation: the agent follows its bus name's owner and accepts signals
// only from the current owner. Whenever it finds the daemon running (at
// start, when the name gets an owner) it catches up with the runs that
// finished while it was not listening (RecentRuns, from a mark in its state
// DB), without ever starting the daemon for that. Otherwise it calls the
// daemon only when a run finished or a user acted, so it neither spins nor
// keeps the daemon up. When the system bus itself goes away, it reconnects
// with a backoff.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/service/notify"
)

// BusName is the agent's name on the session bus: owning it makes one
// agent per session (the user unit and the autostart entry may both start
// one) and tells systemd the agent is up (Type=dbus).
const BusName = "io.github.stowage.Agent1"

// ErrAlreadyRunning is returned by ClaimSession when another agent owns
// BusName.
var ErrAlreadyRunning = errors.New("agent: another stowage agent runs in this session")

// ClaimSession requests BusName on the session bus without queueing.
func ClaimSession(session *dbus.Conn) error {
	reply, err := session.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return fmt.Errorf("agent: requesting %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		return ErrAlreadyRunning
	}
	return nil
}

// RunNotifier shows one notification per run: *notify.Notifier.
type RunNotifier interface {
	NotifyRun(ctx context.Context, job, runID string, events []report.Event) (*notify.Sent, error)
}

var _ RunNotifier = (*notify.Notifier)(nil)

// Bucket is the agent's state DB bucket: "caught_up" → the end time of the
// last run it handled.
const Bucket = "agent"

// CatchUpWindow is how far back the first catch-up looks.
const CatchUpWindow = 7 * 24 * time.Hour

// ErrNotConnected is returned by the Actor methods while the agent has no
// system bus connection.
var ErrNotConnected = errors.New("agent: not connected to the system bus")

// Options configure an Agent.
type Options struct {
	// ConnectSystem opens a connection to the system bus (dbusapi.Connect
	// or ConnectAddress); it is called again after the bus went away.
	ConnectSystem func() (*dbus.Conn, error)
	// Render writes a run as `stowage report RUN` prints it; nil writes a
	// short text form.
	Render func(w io.Writer, r *api.Run) error
	// Logger; nil discards.
	Logger *slog.Logger
	// RetryMin and RetryMax bound the wait between attempts to reach the
	// system bus (doubling); 0 means 1s and 1m.
	RetryMin, RetryMax time.Duration
	// CallTimeout bounds GetReport and the notifier call for one run; 0
	// means 30s. Actions use the caller's context (a polkit prompt may
	// take a while).
	CallTimeout time.Duration
	// State keeps how far the agent has caught up with the daemon's runs
	// (bucket Bucket); nil catches up CatchUpWindow at every connection.
	State *state.DB
	// Handled, when set, is called after each finished run was handled
	// (sent is nil when nothing was shown, err says why); for tests and
	// debug logging.
	Handled func(job, runID string, sent *notify.Sent, err error)
}

// Agent relays the system daemon's runs to the session; safe for
// concurrent use (the notifier calls the Actor methods from its own
// goroutines).
type Agent struct {
	opts Options
	log  *slog.Logger

	mu  sync.Mutex
	sys *dbus.Conn // current system bus connection; nil while there is none
}

var _ notify.Actor = (*Agent)(nil)

// New returns an Agent; Run starts it.
func New(opts Options) (*Agent, error) {
	if opts.ConnectSystem == nil {
		return nil, errors.New("agent: New needs ConnectSystem")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = time.Second
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(time.Minute, opts.RetryMin)
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.Render == nil {
		opts.Render = RenderText
	}
	return &Agent{opts: opts, log: opts.Logger}, nil
}

// Run relays finished runs to n until ctx ends (then it returns nil). A
// system bus that cannot be reached or goes away is retried with a backoff;
// a missing system daemon is no error (it is activated on demand and its
// signals arrive when it runs).
func (a *Agent) Run(ctx context.Context, n RunNotifier) error {
	if n == nil {
		return errors.New("agent: Run needs a notifier")
	}
	wait := a.opts.RetryMin
	for {
		conn, err := a.opts.ConnectSystem()
		if err != nil {
			a.log.Warn("system bus unreachable, retrying in "+wait.String()+": "+err.Error(), "error", err)
		} else {
			connected := time.Now()
			err = a.serve(ctx, conn, n)
			conn.Close()
			if ctx.Err() != nil {
				return nil
			}
			a.log.Warn("system bus connection lost, reconnecting: "+err.Error(), "error", err)
			if time.Since(connected) > a.opts.RetryMax {
				wait = a.opts.RetryMin // it had been up a while: not a flapping bus
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(wait*2, a.opts.RetryMax)
	}
}

// serve handles one system bus connection until it or ctx ends.
func (a *Agent) serve(ctx context.Context, conn *dbus.Conn, n RunNotifier) error {
	// Both matches before reading the owner: no change can slip between.
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
		dbus.WithMatchArg(0, dbusapi.BusName)); err != nil {
		return fmt.Errorf("agent: watching %s: %w", dbusapi.BusName, err)
	}
	// sender=BusName: the bus delivers only what the name's owner sends.
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender(dbusapi.BusName),
		dbus.WithMatchObjectPath(dbusapi.ObjectPath), dbus.WithMatchInterface(dbusapi.Interface),
		dbus.WithMatchMember("JobFinished")); err != nil {
		return fmt.Errorf("agent: subscribing to JobFinished: %w", err)
	}
	sigs := make(chan *dbus.Signal, 64)
	conn.Signal(sigs)
	defer conn.RemoveSignal(sigs)

	var owner string
	err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, dbusapi.BusName).Store(&owner)
	var derr dbus.Error
	if err != nil && !(errors.As(err, &derr) && derr.Name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
		return fmt.Errorf("agent: GetNameOwner: %w", err)
	}
	a.log.Info("watching the system service", "name", dbusapi.BusName, "running", owner != "")
	if owner != "" {
		a.catchUp(ctx, conn, n)
	}

	a.mu.Lock()
	a.sys = conn
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		if a.sys == conn {
			a.sys = nil
		}
		a.mu.Unlock()
	}()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-conn.Context().Done():
			return fmt.Errorf("agent: system bus connection closed: %w", context.Cause(conn.Context()))
		case s, ok := <-sigs:
			if !ok {
				return errors.New("agent: system bus connection closed")
			}
			switch {
			case s.Name == "org.freedesktop.DBus.NameOwnerChanged" && s.Sender == "org.freedesktop.DBus":
				if len(s.Body) == 3 && s.Body[0] == dbusapi.BusName {
					owner, _ = s.Body[2].(string)
					a.log.Debug("system service owner changed", "owner", owner)
					if owner != "" {
						// Runs it finished while this agent was not
						// listening (not logged in, say).
						a.catchUp(ctx, conn, n)
					}
				}
			case s.Name == dbusapi.Interface+".JobFinished" && s.Path == dbusapi.ObjectPath:
				// Anyone on the system bus may emit a signal under our
				// interface; only the name's owner speaks for the daemon.
				if owner == "" || s.Sender != owner {
					a.log.Debug("ignoring JobFinished not from the system service", "sender", s.Sender, "owner", owner)
					continue
				}
				job, runID, ok := jobFinished(s.Body)
				if !ok {
					a.log.Warn("malformed JobFinished signal", "body", fmt.Sprint(s.Body))
					continue
				}
				sent, err := a.relay(ctx, conn, n, job, runID, 0)
				if err != nil {
					a.log.Warn("run not relayed: "+err.Error(), "job", job, "run_id", runID, "error", err)
				}
				if a.opts.Handled != nil {
					a.opts.Handled(job, runID, sent, err)
				}
			}
		}
	}
}

// jobFinished reads JobFinished(s job, s run_id, s outcome, s summary).
func jobFinished(body []any) (job, runID string, ok bool) {
	if len(body) != 4 {
		return "", "", false
	}
	job, ok1 := body[0].(string)
	runID, ok2 := body[1].(string)
	return job, runID, ok1 && ok2 && job != "" && runID != ""
}

// catchUp relays the runs that finished since the last one handled
// (RecentRuns), oldest first, stopping at the first failure so that it is
// tried again. It never starts the daemon (NoAutoStart): it runs when the
// daemon is up anyway.
func (a *Agent) catchUp(ctx context.Context, conn *dbus.Conn, n RunNotifier) {
	since := a.caughtUp()
	cctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	var refs []dbusapi.RunRefEntry
	err := conn.Object(dbusapi.BusName, dbusapi.ObjectPath).CallWithContext(cctx, dbusapi.Interface+".RecentRuns",
		dbus.FlagNoAutoStart, uint64(max(since.UnixMicro(), 0))).Store(&refs)
	cancel()
	if err != nil {
		a.log.Warn("cannot catch up with the system service's runs: "+err.Error(), "error", err)
		return
	}
	if len(refs) > 0 {
		a.log.Info(fmt.Sprintf("catching up with %d runs", len(refs)), "since", since)
	}
	for _, ref := range refs {
		sent, err := a.relay(ctx, conn, n, ref.Job, ref.ID, dbus.FlagNoAutoStart)
		if a.opts.Handled != nil {
			a.opts.Handled(ref.Job, ref.ID, sent, err)
		}
		if err != nil {
			a.log.Warn("run not relayed: "+err.Error(), "job", ref.Job, "run_id", ref.ID, "error", err)
			return
		}
	}
}

// caughtUp is the end time of the last run handled, or the start of the
// catch-up window.
func (a *Agent) caughtUp() time.Time {
	floor := time.Now().Add(-CatchUpWindow)
	if a.opts.State == nil {
		return floor
	}
	var t time.Time
	err := a.opts.State.View(Bucket, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return state.GetJSON(b, "caught_up", &t)
	})
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		a.log.Warn("reading the catch-up mark: "+err.Error(), "error", err)
	}
	if t.Before(floor) {
		return floor
	}
	return t
}

// handled moves the catch-up mark to a run's end, never back.
func (a *Agent) handled(r *api.Run) {
	if a.opts.State == nil || r.Finished.IsZero() {
		return
	}
	err := a.opts.State.Update(Bucket, func(b *bolt.Bucket) error {
		var t time.Time
		if err := state.GetJSON(b, "caught_up", &t); err == nil && !r.Finished.After(t) {
			return nil
		}
		return state.PutJSON(b, "caught_up", r.Finished)
	})
	if err != nil {
		a.log.Warn("recording the catch-up mark: "+err.Error(), "error", err)
	}
}

// relay fetches a finished run's report and shows its findings; once they
// were shown (or there were none) the run counts as handled.
func (a *Agent) relay(ctx context.Context, conn *dbus.Conn, n RunNotifier, job, runID string, flags dbus.Flags) (*notify.Sent, error) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.CallTimeout)
	defer cancel()
	r, err := getRun(ctx, conn, runID, flags)
	if err != nil {
		return nil, err
	}
	if r.DryRun || r.Common == nil || len(r.Common.Events) == 0 {
		a.log.Debug("run finished without findings to show", "job", job, "run_id", runID, "dry_run", r.DryRun)
		a.handled(r)
		return nil, nil
	}
	sent, err := n.NotifyRun(ctx, job, runID, r.Common.Events)
	if err != nil {
		return sent, fmt.Errorf("agent: notifying run %s: %w", runID, err)
	}
	a.handled(r)
	if sent != nil {
		// Message and fields: journalctl shows only the message by default.
		a.log.Info(fmt.Sprintf("notified: %s run %s, %d findings", job, runID, sent.Findings), "job", job, "run_id", runID, "id", sent.ID, "findings", sent.Findings)
	}
	return sent, nil
}

// getRun calls GetReport and decodes the run record.
func getRun(ctx context.Context, conn *dbus.Conn, runID string, flags dbus.Flags) (*api.Run, error) {
	var js string
	if err := conn.Object(dbusapi.BusName, dbusapi.ObjectPath).CallWithContext(ctx,
		dbusapi.Interface+".GetReport", flags, runID).Store(&js); err != nil {
		return nil, fmt.Errorf("agent: GetReport %s: %w", runID, err)
	}
	var r api.Run
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return nil, fmt.Errorf("agent: GetReport %s: decoding the run: %w", runID, err)
	}
	if r.ID != runID {
		return nil, fmt.Errorf("agent: GetReport %s returned run %q", runID, r.ID)
	}
	// Common is not on the wire: parse it from the worker's report, as
	// the daemon did (a run without a report has no findings).
	if len(r.Report) > 0 {
		var c report.Common
		if err := json.Unmarshal(r.Report, &c); err != nil {
			return nil, fmt.Errorf("agent: GetReport %s: decoding the report: %w", runID, err)
		}
		r.Common = &c
	}
	return &r, nil
}

func (a *Agent) conn() (*dbus.Conn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sys == nil {
		return nil, ErrNotConnected
	}
	return a.sys, nil
}

// call calls a method of the system service that may ask polkit (the
// caller's context bounds a password prompt).
func (a *Agent) call(ctx context.Context, method string, args ...any) (string, error) {
	conn, err := a.conn()
	if err != nil {
		return "", err
	}
	var id string
	if err := conn.Object(dbusapi.BusName, dbusapi.ObjectPath).CallWithContext(ctx, dbusapi.Interface+"."+method,
		dbus.FlagAllowInteractiveAuthorization, args...).Store(&id); err != nil {
		return "", fmt.Errorf("agent: %s: %w", method, err)
	}
	return id, nil
}

// Prune starts a prune run of the system service (not a dry run).
func (a *Agent) Prune(ctx context.Context) (string, error) {
	return a.call(ctx, "RunJob", "prune", false)
}

// Pull asks the system service to pull ref now.
func (a *Agent) Pull(ctx context.Context, ref string) (string, error) {
	return a.call(ctx, "PullImage", ref)
}

// Report returns a system run rendered as text.
func (a *Agent) Report(ctx context.Context, runID string) (string, error) {
	conn, err := a.conn()
	if err != nil {
		return "", err
	}
	r, err := getRun(ctx, conn, runID, 0)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := a.opts.Render(&b, r); err != nil {
		return "", fmt.Errorf("agent: rendering run %s: %w", runID, err)
	}
	return b.String(), nil
}

// RenderText writes a run's header, summary, error and findings.
func RenderText(w io.Writer, r *api.Run) error {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s: %s %s", r.ID, r.Job, r.Outcome)
	if r.DryRun {
		b.WriteString(" (dry run)")
	}
	b.WriteByte('\n')
	if r.Summary != "" {
		fmt.Fprintln(&b, r.Summary)
	}
	if r.Error != "" {
		fmt.Fprintln(&b, "error:", r.Error)
	}
	if r.Common != nil {
		for _, ev := range r.Common.Events {
			fmt.Fprintf(&b, "[%s] %s\n", ev.Severity, ev.Message)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
