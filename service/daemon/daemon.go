// Package daemon is the stowage daemon's lifecycle: it takes the control
// socket (socket activation or its own), schedules job runs as worker
// processes, records them, serves the control API, speaks the sd_notify
// protocol, reloads the policy on SIGHUP or request, and exits when idle.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/control"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/service/deferral"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/service/metrics"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/scheduler"
	"github.com/stowage/stowage/service/worker"
)

// ListenerName is the FileDescriptorName= of the control socket in the
// .socket unit.
const ListenerName = "control"

// MetricsListenerName is the FileDescriptorName= of the optional metrics
// socket (stowage-metrics.socket): GET /metrics only, and scrapes are not
// activity for the idle exit.
const MetricsListenerName = "metrics"

// shutdownGrace bounds the wait for API requests in flight at shutdown.
const shutdownGrace = 5 * time.Second

// Observer is told about runs and reloads (D-Bus signals and properties,
// desktop notifications). Calls are made without the daemon's locks held
// and must not block for long.
type Observer interface {
	RunStarted(r *api.Run)
	RunFinished(ctx context.Context, r *api.Run)
	PolicyLoaded(p *policy.Policy, err error)
	StateChanged(s api.Status)
}

// Options configure a daemon.
type Options struct {
	System  bool
	Version string
	// IdleExit > 0 makes Run return when no client is connected, no
	// control request or D-Bus call came within IdleExit, no run is queued,
	// in progress or armed as a catch-up, and no scheduled run (jitter
	// included) is due within IdleExit (scheduler.StayUp).
	IdleExit time.Duration
	// LoadPolicy reads the policy. The snapshot is what the daemon
	// schedules by and what every worker it starts receives.
	LoadPolicy func() (*policy.Snapshot, error)
	// Jobs are the jobs the daemon schedules and reports on: the command
	// line's list (required).
	Jobs    jobspec.Registry
	Runs    *runs.Store
	Spawner *worker.Spawner
	Logger  *slog.Logger
	// Listener is the control socket; nil takes the activated fd named
	// "control", else listens on SocketPath (or api.SocketPath).
	Listener   net.Listener
	SocketPath string
	// MetricsListener serves GET /metrics alone; nil takes the activated fd
	// named "metrics" if there is one.
	MetricsListener net.Listener
	// NodeExporterDir overrides metrics.NodeExporterDir for textfile = "auto"
	// (tests).
	NodeExporterDir string
	Clock           clock.Clock
	// Observers are optional; see Observer.
	Observers []Observer
	// State is the state database (pins over D-Bus, notification memory).
	State *state.DB
	// NoBus skips D-Bus; BusAddress overrides the session/system bus.
	NoBus      bool
	BusAddress string
	// HostState reports whether the host is on a metered connection or on
	// battery (service/hoststate); nil is neither. Runs leave out the work
	// the policy defers then ([schedule] defer_on_metered,
	// defer_on_battery), and the daemon catches it up when that clears.
	HostState HostState
	// DeferredSettle is how long changed host conditions must hold before
	// deferred work is caught up (0: at once).
	DeferredSettle time.Duration
	// KeepStartupMemory skips releaseStartupMemory after READY=1.
	KeepStartupMemory bool
	// ReportOpener opens the report file a notification's "Show report"
	// writes (the path is appended); nil means xdg-open.
	ReportOpener []string
	// testAfterQueue, set by tests only, runs in Trigger right after the
	// scheduler queued the run.
	testAfterQueue func(id string)
}

// Daemon is one daemon instance.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics.Metrics
	sched   *scheduler.Scheduler
	server  *control.Server
	started time.Time

	reloadMu sync.Mutex // serializes reloads
	// lifeMu and closed keep a reload that outlives Run (its policy load
	// hung, and shutdown never waits for it) from touching the state
	// database, the metrics or systemd once Run has returned.
	lifeMu sync.RWMutex
	closed bool
	// metricsMu serializes metric updates and textfile writes.
	metricsMu sync.Mutex

	mu         sync.Mutex
	snap       *policy.Snapshot // the policy in force
	policyErr  string
	stateErr   string // why the state database is unusable, "" when it is fine
	policyLoad time.Time
	active     map[string]*api.Run // queued and running runs by id
	bus        string              // D-Bus state for status
	// observers are fixed before the scheduler starts.
	observers []Observer
	// busSrv is the D-Bus object, nil without a bus. startBus sets it and
	// idle reads it, both on Run's goroutine.
	busSrv *dbusapi.Server
	// notifier sends desktop notifications (user mode), nil without;
	// startBus sets it and idle reads it, both on Run's goroutine.
	notifier *notify.Notifier
	// last caches each job's last finished run (without its report): the
	// daemon is the only writer, and status/jobs requests then never wait
	// on the state database's file lock.
	last map[string]*api.Run
	// since is when each scheduled job's current schedule was first seen
	// (persisted, see baseline.go): the catch-up baseline of a job that
	// never ran.
	since map[string]time.Time
	// periods are the schedule periods of the policy in force (metrics).
	periods map[string]time.Duration
	// owed is the deferred work runs left out, by job (deferral.go).
	owed deferral.Owed
	// deferKick asks the host-state watcher to look at owed work now.
	deferKick chan struct{}
}

// New loads the policy and builds the daemon; nothing runs until Run.
func New(o Options) (*Daemon, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if len(o.Jobs) == 0 || o.Runs == nil || o.Spawner == nil || o.LoadPolicy == nil {
		return nil, errors.New("daemon: Jobs, Runs, Spawner and LoadPolicy are required")
	}
	snap, err := o.LoadPolicy()
	if err != nil {
		return nil, fmt.Errorf("loading policy: %w", err)
	}
	cfg, err := scheduleConfig(snap, o.Jobs)
	if err != nil {
		return nil, err
	}
	last, err := o.Runs.Last()
	switch {
	case errors.Is(err, state.ErrCorrupt):
		// The daemon starts without the run history: status says what
		// is wrong with the state database (checkState) and the jobs
		// that need it fail with the same error.
		o.Logger.Error("reading last runs", "err", err)
		last = nil
	case err != nil:
		return nil, fmt.Errorf("reading last runs: %w", err)
	}
	// Before the reports go: what the last runs left out is still owed.
	owed := owedFrom(last)
	for _, r := range last {
		r.Report = nil
	}
	d := &Daemon{
		opts: o, log: o.Logger, metrics: metrics.New(o.Jobs), started: time.Now(),
		snap: snap, policyLoad: time.Now(), active: map[string]*api.Run{}, last: last,
		periods:   periodsOf(cfg),
		observers: append([]Observer(nil), o.Observers...),
		owed:      owed, deferKick: make(chan struct{}, 1),
	}
	d.since = d.syncBaselines(cfg)
	d.sched = scheduler.New(cfg, d.execute, scheduler.Options{
		Clock: o.Clock, Logger: o.Logger, NewID: runs.NewID, Changed: d.stateChanged,
	})
	uid := os.Geteuid()
	d.server = control.NewServer(d, d.metrics.Handler(), control.Access{System: o.System, UID: uid}, o.Logger)
	return d, nil
}

// Metrics are the daemon's metrics.
func (d *Daemon) Metrics() *metrics.Metrics { return d.metrics }

// Mode is "system" or "user".
func (d *Daemon) Mode() string {
	if d.opts.System {
		return "system"
	}
	return "user"
}

// runPolicy is the scheduler payload: the snapshot a run must use, encoded
// once per load.
type runPolicy struct {
	encoded []byte
	policy  *policy.Policy
}

// scheduleConfig turns the policy into the scheduler's configuration, one
// scheduler job per registered job; each run started under it carries the
// snapshot (Request.Payload), so a run's Mutating flag and the policy its
// worker gets come from one load.
func scheduleConfig(snap *policy.Snapshot, jobs []jobspec.Descriptor) (scheduler.Config, error) {
	enc, err := snap.Encode()
	if err != nil {
		return scheduler.Config{}, err
	}
	p := snap.Policy
	s := p.Schedule
	cfg := scheduler.Config{
		Jitter: s.Jitter.Duration, Timeout: s.RunTimeout.Duration,
		Payload: &runPolicy{encoded: enc, policy: p},
	}
	for _, j := range jobs {
		spec := j.Schedule(s)
		cfg.Jobs = append(cfg.Jobs, scheduler.Job{
			Name: j.Name, Spec: spec.Spec, Schedule: spec.Sched, Mutating: j.Mutating(p),
		})
	}
	return cfg, nil
}

// Run serves until ctx ends, SIGTERM/SIGINT arrive (the caller's ctx), or
// the daemon has been idle for IdleExit.
func (d *Daemon) Run(ctx context.Context) error {
	unlock, err := d.lockState()
	if err != nil {
		return err
	}
	defer unlock()
	l, ml, err := d.listen()
	if err != nil {
		return err
	}
	defer l.Close()
	d.updateMetrics()
	if ml != nil {
		srv := d.metricsServer()
		go func() {
			if err := srv.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Warn("metrics socket", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	stopBus := d.startBus()
	defer stopBus()

	schedCtx, stopSched := context.WithCancel(context.WithoutCancel(ctx))
	schedDone := make(chan struct{})
	go func() { d.sched.Run(schedCtx); close(schedDone) }()
	d.catchUp()
	hostDone := d.watchHost(schedCtx)

	srvErr := make(chan error, 1)
	go func() { srvErr <- d.server.Serve(l) }()

	d.notifyLoaded()
	d.notify("READY=1\nSTATUS=" + d.statusLine())
	d.log.Info("stowage daemon ready", "mode", d.Mode(), "socket", l.Addr().String(), "pid", os.Getpid())
	if !d.opts.KeepStartupMemory {
		kib, err := releaseStartupMemory()
		d.log.Debug("released start-up memory", "kib", kib, "error", err)
	}

	var watchdog <-chan time.Time
	if wd, err := sddaemon.SdWatchdogEnabled(false); err == nil && wd > 0 {
		t := time.NewTicker(wd / 2)
		defer t.Stop()
		watchdog = t.C
	}
	var idle <-chan time.Time
	if d.opts.IdleExit > 0 {
		t := time.NewTicker(min(max(d.opts.IdleExit/4, 10*time.Millisecond), 5*time.Second))
		defer t.Stop()
		idle = t.C
	}

	// Reloads run on their own goroutine: a reload that blocks (a policy
	// file on a hung network filesystem) never delays SIGTERM. Further
	// SIGHUPs while one is in flight collapse into one more reload.
	reloadReq := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-schedCtx.Done():
				return
			case <-reloadReq:
				d.Reload()
			}
		}
	}()

	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping", "reason", context.Cause(ctx))
			break loop
		case <-hup:
			select {
			case reloadReq <- struct{}{}:
			default:
			}
		case <-watchdog:
			d.notify("WATCHDOG=1")
		case <-idle:
			if d.idle() {
				d.log.Info("exiting: idle", "idle_exit", d.opts.IdleExit)
				break loop
			}
		case err := <-srvErr:
			runErr = fmt.Errorf("control socket: %w", err)
			break loop
		}
	}

	d.notify("STOPPING=1")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	_ = d.server.Shutdown(sctx)
	cancel()
	stopSched()
	<-schedDone
	<-hostDone
	// A reload still loading its policy finishes without effect.
	d.lifeMu.Lock()
	d.closed = true
	d.lifeMu.Unlock()
	return runErr
}

// idle reports whether the daemon may exit now: no client on the control
// socket or D-Bus within the idle window, no notification with actions
// open (notify.Notifier.ActionsOpen), no run in progress, queued or
// armed as a catch-up, and no scheduled start due within the idle window
// (scheduler.StayUp). A later slot is left to the timer: it starts the
// daemon again and the start-up catch-up runs what was missed.
func (d *Daemon) idle() bool {
	if !d.server.Idle(d.opts.IdleExit) {
		return false
	}
	// A client using the daemon over D-Bus is as active as one on the
	// control socket.
	if d.busSrv != nil && !d.busSrv.Idle(d.opts.IdleExit) {
		return false
	}
	// A notification with actions is open: its ActionInvoked must find
	// the daemon. The notifier bounds this (the notification's expiry plus
	// a minute, at most notify.DefaultHold), so a server that never says
	// it closed one cannot keep the daemon up for ever.
	if d.notifier != nil && d.notifier.ActionsOpen() {
		return false
	}
	return !scheduler.StayUp(d.sched.Jobs(), d.now(), d.opts.IdleExit)
}

func (d *Daemon) now() time.Time {
	if d.opts.Clock != nil {
		return d.opts.Clock.Now()
	}
	return time.Now()
}

// catchUp arms the runs missed while the daemon was not running: for each
// job, from the later of its last run and the first sight of its schedule.
func (d *Daemon) catchUp() {
	base := map[string]scheduler.Baseline{}
	d.mu.Lock()
	for job, t := range d.since {
		b := base[job]
		b.Since = t
		base[job] = b
	}
	for job, r := range d.last {
		b := base[job]
		b.LastRun = r.Started
		base[job] = b
	}
	d.mu.Unlock()
	d.sched.CatchUp(base)
}

// listen returns the control socket and the metrics socket (nil when
// there is none).
func (d *Daemon) listen() (ctl, metricsL net.Listener, err error) {
	metricsL = d.opts.MetricsListener
	if d.opts.Listener != nil {
		return d.opts.Listener, metricsL, nil
	}
	named, err := activation.ListenersWithNames()
	if err != nil {
		return nil, nil, fmt.Errorf("socket activation: %w", err)
	}
	if ls := named[MetricsListenerName]; metricsL == nil && len(ls) > 0 && ls[0] != nil {
		metricsL = ls[0]
		for _, extra := range ls[1:] {
			_ = extra.Close()
		}
		delete(named, MetricsListenerName)
	}
	if ls := named[ListenerName]; len(ls) > 0 && ls[0] != nil {
		for _, extra := range ls[1:] {
			_ = extra.Close()
		}
		return ls[0], metricsL, nil
	}
	for name, ls := range named {
		d.log.Warn("ignoring activated sockets without the name "+ListenerName+" or "+MetricsListenerName, "name", name, "count", len(ls))
		for _, l := range ls {
			if l != nil {
				_ = l.Close()
			}
		}
	}
	path := d.opts.SocketPath
	if path == "" {
		if path, err = api.SocketPath(d.opts.System); err != nil {
			return nil, nil, err
		}
	}
	if ctl, err = listenUnix(path, d.opts.System, d.log); err != nil {
		if metricsL != nil {
			_ = metricsL.Close()
		}
		return nil, nil, err
	}
	return ctl, metricsL, nil
}

// listenUnix creates the socket at path: 0600 for a user, 0660 root:stowage
// for the system service when the group exists (else 0600).
func listenUnix(path string, system bool, log *slog.Logger) (net.Listener, error) {
	dirMode := os.FileMode(0o700)
	if system {
		dirMode = 0o755
	}
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another daemon is listening on %s", path)
		}
		_ = os.Remove(path) // stale socket of a dead daemon
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if system {
		if g, err := user.LookupGroup("stowage"); err == nil {
			gid, _ := strconv.Atoi(g.Gid)
			if err := os.Chown(path, 0, gid); err != nil {
				log.Warn("socket group", "err", err)
			} else if err := os.Chmod(path, 0o660); err != nil {
				log.Warn("socket mode", "err", err)
			}
		}
	}
	return l, nil
}

// notify sends an sd_notify message (a no-op without NOTIFY_SOCKET).
func (d *Daemon) notify(state string) {
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		d.log.Debug("sd_notify", "err", err)
	}
}

func (d *Daemon) statusLine() string {
	var running []string
	for _, j := range d.sched.Jobs() {
		if j.Running != nil {
			running = append(running, j.Name)
		}
	}
	d.mu.Lock()
	perr, serr := d.policyErr, d.stateErr
	d.mu.Unlock()
	s := "idle"
	if len(running) > 0 {
		s = "running " + strings.Join(running, ", ")
	}
	if perr != "" {
		s += "; policy invalid (previous policy in force)"
	}
	if serr != "" {
		s += "; state database unusable (see stowage status)"
	}
	return s
}

func (d *Daemon) stateChanged() {
	d.notify("STATUS=" + d.statusLine())
	if len(d.observers) == 0 {
		return
	}
	st := d.Status()
	for _, o := range d.observers {
		o.StateChanged(st)
	}
}

// Reload re-reads the policy. An invalid policy keeps the previous one in
// force; the error is reported in the result, the status and the log.
func (d *Daemon) Reload() api.ReloadResult {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.notify("RELOADING=1\nMONOTONIC_USEC=" + sddaemon.SdNotifyMonotonicUsec())
	snap, err := d.opts.LoadPolicy()
	d.lifeMu.RLock()
	defer d.lifeMu.RUnlock()
	if d.closed {
		return api.ReloadResult{OK: false, Error: "the daemon stopped while the policy was loading"}
	}
	// The status line is built when the reload is over: it describes the
	// state after it.
	defer func() { d.notify("READY=1\nSTATUS=" + d.statusLine()) }()
	var cfg scheduler.Config
	if err == nil {
		cfg, err = scheduleConfig(snap, d.opts.Jobs)
	}
	var files []string
	d.mu.Lock()
	d.policyLoad = time.Now()
	if err != nil {
		d.policyErr = err.Error()
	} else {
		d.snap, d.policyErr = snap, ""
		files = snap.Files()
	}
	d.mu.Unlock()
	if err != nil {
		d.updateMetrics()
		// The message itself says why: `journalctl -u stowage` shows it
		// without -o verbose.
		journal.LogPolicyInvalid(context.Background(), d.log, strings.Join(files, " "), err, true)
		for _, o := range d.observers {
			o.PolicyLoaded(nil, err)
		}
		return api.ReloadResult{OK: false, Error: err.Error()}
	}
	since := d.syncBaselines(cfg)
	d.mu.Lock()
	d.since = since
	d.periods = periodsOf(cfg)
	d.mu.Unlock()
	d.sched.Reconfigure(cfg)
	d.updateMetrics()
	d.log.Info("policy reloaded", "files", strings.Join(files, ","))
	d.notifyLoaded()
	return api.ReloadResult{OK: true}
}

func (d *Daemon) notifyLoaded() {
	p := d.Policy()
	for _, o := range d.observers {
		o.PolicyLoaded(p, nil)
	}
}

// Policy returns the policy in force.
func (d *Daemon) Policy() *policy.Policy {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.snap.Policy
}
