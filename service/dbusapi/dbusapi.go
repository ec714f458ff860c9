// Package dbusapi exports the stowage daemon on D-Bus: the object
// /io/github/stowage/Stowage1 with the interface
// io.github.stowage.Stowage1.Manager (read-only properties with
// PropertiesChanged, methods backed by the daemon, past-tense signals) under
// the bus name io.github.stowage.Stowage1. On the system bus, mutating
// methods are allowed to uid 0 or to callers polkit authorizes for
// io.github.stowage.manage; without polkit they are refused.
package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/stowage/stowage/jobs/shared/report"
)

// Names on the bus.
const (
	BusName                    = "io.github.stowage.Stowage1"
	ObjectPath dbus.ObjectPath = "/io/github/stowage/Stowage1"
	Interface                  = "io.github.stowage.Stowage1.Manager"
	// PolkitAction authorizes mutating methods for non-root callers on
	// the system bus.
	PolkitAction = "io.github.stowage.manage"
)

// D-Bus error names returned by methods.
const (
	ErrorAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	ErrorUnknownJob   = "io.github.stowage.Stowage1.Error.UnknownJob"
	ErrorUnknownRun   = "io.github.stowage.Stowage1.Error.UnknownRun"
	ErrorBusy         = "io.github.stowage.Stowage1.Error.Busy"
	ErrorInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
	ErrorFailed       = "io.github.stowage.Stowage1.Error.Failed"
)

// Sentinels a Backend wraps (with %w) to give callers a specific D-Bus error
// name; any other error becomes io.github.stowage.Stowage1.Error.Failed.
var (
	ErrUnknownJob  = errors.New("unknown job")
	ErrUnknownRun  = errors.New("unknown run")
	ErrBusy        = errors.New("busy")
	ErrInvalidArgs = errors.New("invalid arguments")
)

// Errors of Connect, ConnectAddress and Export.
var (
	// ErrNoBus: the bus is not reachable; the daemon runs without it.
	ErrNoBus = errors.New("dbusapi: no bus")
	// ErrNameNotAcquired: another process owns BusName.
	ErrNameNotAcquired = errors.New("dbusapi: bus name not acquired")
)

// Backend is what the daemon provides to the D-Bus object. godbus calls
// methods concurrently, each in its own goroutine.
type Backend interface {
	// ListJobs returns every configured job with its schedule and history.
	ListJobs(ctx context.Context) ([]Job, error)
	// RunJob starts a run of job now and returns its run id without
	// waiting for it to finish.
	RunJob(ctx context.Context, job string, dryRun bool) (runID string, err error)
	// Pull starts a run that pulls one image reference now (refresh in
	// pull mode for that reference) and returns its run id without
	// waiting for it to finish.
	Pull(ctx context.Context, ref string) (runID string, err error)
	// RecentRuns lists the finished runs (not dry runs) that ended after
	// since, oldest first, at most MaxRecentRuns: what a session agent
	// that was not listening missed.
	RecentRuns(ctx context.Context, since time.Time) ([]RunRef, error)
	// GetReport returns a run's report as JSON.
	GetReport(ctx context.Context, runID string) (json string, err error)
	// Reload re-reads the policy; an invalid policy returns an error and
	// keeps the old one.
	Reload(ctx context.Context) error
	// Pin protects an image reference from pruning; Unpin undoes it.
	Pin(ctx context.Context, ref string) error
	Unpin(ctx context.Context, ref string) error
}

// MaxRecentRuns bounds RecentRuns' answer.
const MaxRecentRuns = 100

// RunRef names a finished run: on the bus the struct (sst) of run id, job
// and end time in µs since the Unix epoch.
type RunRef struct {
	ID       string
	Job      string
	Finished time.Time
}

// RunRefEntry is the D-Bus struct of a RunRef.
type RunRefEntry struct {
	ID           string
	Job          string
	FinishedUsec uint64
}

// Entry converts a RunRef to its D-Bus struct.
func (r RunRef) Entry() RunRefEntry {
	return RunRefEntry{ID: r.ID, Job: r.Job, FinishedUsec: usec(r.Finished)}
}

// Job is one job as seen on the bus. Zero times mean never / not scheduled.
type Job struct {
	Name        string
	Schedule    string
	LastRun     time.Time
	LastOutcome string // e.g. "succeeded", "failed"; "" when never run
	LastSummary string
	NextRun     time.Time
	Running     bool
}

// JobEntry is the D-Bus struct of a Job, signature (sstsstb): name, schedule,
// last run and next run in µs since the Unix epoch (0 = never), last
// outcome, last summary, running.
type JobEntry struct {
	Name        string
	Schedule    string
	LastRunUsec uint64
	LastOutcome string
	LastSummary string
	NextRunUsec uint64
	Running     bool
}

// Entry converts a Job to its D-Bus struct.
func (j Job) Entry() JobEntry {
	return JobEntry{
		Name: j.Name, Schedule: j.Schedule, LastRunUsec: usec(j.LastRun),
		LastOutcome: j.LastOutcome, LastSummary: j.LastSummary,
		NextRunUsec: usec(j.NextRun), Running: j.Running,
	}
}

func usec(t time.Time) uint64 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint64(t.UnixMicro())
}

// Status is the daemon state published as properties. The daemon changes it
// with Server.Update; only changed properties emit PropertiesChanged.
type Status struct {
	Version           string
	Mode              string // "user" or "system"
	State             string // e.g. "idle", "running", "reloading", "stopping"
	PolicyPath        string
	PolicyError       string // "" when the policy in force loaded cleanly
	StorageUsedBytes  uint64
	StorageLimitBytes uint64 // 0 = no limit
	Jobs              []Job
}

// Options configure Export.
type Options struct {
	// Conn is the bus connection (from Connect or ConnectAddress).
	Conn *dbus.Conn
	// Backend serves the methods.
	Backend Backend
	// Logger receives authorization and emit failures; nil discards.
	Logger *slog.Logger
	// RequireAuth makes mutating methods check the caller (uid 0 or
	// polkit); set it on the system bus.
	RequireAuth bool
	// Status is the initial property state.
	Status Status
	// CallTimeout bounds each backend and polkit call; 0 means 30s.
	CallTimeout time.Duration
}

// Server is the exported object. Its methods are safe for concurrent use.
type Server struct {
	conn    *dbus.Conn
	backend Backend
	log     *slog.Logger
	auth    bool
	timeout time.Duration
	props   *prop.Properties

	mu     sync.Mutex // guards status
	status Status

	// Activity for Idle: calls in progress, and when the last one ended
	// (unix nanoseconds, 0 = never).
	inflight atomic.Int64
	lastCall atomic.Int64
}

// Connect opens a private connection to the system or session bus. It
// returns an error (wrapping ErrNoBus) when there is no bus. It never
// starts one: the session bus is $DBUS_SESSION_BUS_ADDRESS, else the socket
// $XDG_RUNTIME_DIR/bus (where systemd --user keeps it), else there is none
// (godbus would autolaunch a private bus with dbus-launch, which a daemon
// must not leave behind).
func Connect(system bool) (*dbus.Conn, error) {
	if system {
		c, err := dbus.ConnectSystemBus()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoBus, err)
		}
		return c, nil
	}
	addr, err := sessionBusAddress()
	if err != nil {
		return nil, err
	}
	return ConnectAddress(addr)
}

// sessionBusAddress finds the session bus without autolaunching one.
func sessionBusAddress() (string, error) {
	// "autolaunch:" asks for dbus-launch: the same as no address here.
	if addr := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); addr != "" && addr != "autolaunch:" {
		return addr, nil
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return "", fmt.Errorf("%w: no session bus (DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR unset)", ErrNoBus)
	}
	sock := filepath.Join(dir, "bus")
	fi, err := os.Stat(sock)
	if err != nil {
		return "", fmt.Errorf("%w: no session bus (DBUS_SESSION_BUS_ADDRESS unset): %w", ErrNoBus, err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return "", fmt.Errorf("%w: no session bus (DBUS_SESSION_BUS_ADDRESS unset): %s is not a socket", ErrNoBus, sock)
	}
	return "unix:path=" + dbus.EscapeBusAddressValue(sock), nil
}

// ConnectAddress opens a private connection to the bus at a D-Bus address
// (e.g. unix:path=/run/dbus/system_bus_socket).
func ConnectAddress(addr string) (*dbus.Conn, error) {
	c, err := dbus.Connect(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoBus, addr, err)
	}
	return c, nil
}

// Export exports the object, its properties and introspection data on
// opts.Conn and then, last, requests the bus name. It fails with
// ErrNameNotAcquired when another owner holds the name.
func Export(opts Options) (*Server, error) {
	if opts.Conn == nil || opts.Backend == nil {
		return nil, errors.New("dbusapi: Export needs a connection and a backend")
	}
	s := &Server{
		conn: opts.Conn, backend: opts.Backend, log: opts.Logger,
		auth: opts.RequireAuth, timeout: opts.CallTimeout, status: cloneStatus(opts.Status),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	m := &methods{s: s}
	if err := s.conn.Export(m, ObjectPath, Interface); err != nil {
		return nil, fmt.Errorf("dbusapi: exporting %s: %w", Interface, err)
	}
	props, err := prop.Export(s.conn, ObjectPath, prop.Map{Interface: propMap(s.status)})
	if err != nil {
		return nil, fmt.Errorf("dbusapi: exporting properties: %w", err)
	}
	s.props = props
	// Replace prop's handler with one that counts Get/GetAll as activity.
	if err := s.conn.Export(properties{s: s, p: props}, ObjectPath, "org.freedesktop.DBus.Properties"); err != nil {
		return nil, fmt.Errorf("dbusapi: exporting properties: %w", err)
	}
	// NewIntrospectable adds org.freedesktop.DBus.Peer, which godbus
	// answers on every object.
	node := &introspect.Node{
		Name: string(ObjectPath),
		Interfaces: []introspect.Interface{
			introspect.IntrospectData,
			prop.IntrospectData,
			managerIntrospection(s.status),
		},
	}
	if err := s.conn.Export(introspectable{s: s, i: introspect.NewIntrospectable(node)}, ObjectPath,
		"org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("dbusapi: exporting introspection: %w", err)
	}
	reply, err := s.conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		s.unexport()
		return nil, fmt.Errorf("dbusapi: requesting %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		s.unexport()
		return nil, fmt.Errorf("%w: %s (reply %d)", ErrNameNotAcquired, BusName, reply)
	}
	return s, nil
}

// Close releases the bus name and unexports the object; it does not close
// the connection.
func (s *Server) Close() error {
	_, err := s.conn.ReleaseName(BusName)
	s.unexport()
	if err != nil {
		return fmt.Errorf("dbusapi: releasing %s: %w", BusName, err)
	}
	return nil
}

func (s *Server) unexport() {
	for _, iface := range []string{Interface, "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties"} {
		_ = s.conn.Export(nil, ObjectPath, iface)
	}
}

// Idle reports whether no D-Bus call on the object is in progress and none
// ended within d. Method calls, property reads and introspection count;
// the daemon uses it for its idle exit.
func (s *Server) Idle(d time.Duration) bool {
	if s.inflight.Load() > 0 {
		return false
	}
	last := s.lastCall.Load()
	return last == 0 || time.Since(time.Unix(0, last)) >= d
}

// called marks the start of a call; the returned function marks its end.
func (s *Server) called() func() {
	s.inflight.Add(1)
	return func() {
		// lastCall first: Idle never sees no call in flight and an old end.
		s.lastCall.Store(time.Now().UnixNano())
		s.inflight.Add(-1)
	}
}

// Status returns a copy of the published status.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneStatus(s.status)
}

// Update changes the published status with fn and emits one
// PropertiesChanged carrying the properties that changed (none: no signal).
// A failed emit (bus gone) is logged, never fatal.
func (s *Server) Update(fn func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := cloneStatus(s.status)
	fn(&next)
	old := propValues(s.status)
	s.status = next
	changed := map[string]dbus.Variant{}
	for name, v := range propValues(next) {
		if !equalValue(old[name], v) {
			// Props are EmitFalse: SetMust only stores (same types, no
			// error); we emit one signal for all of them below.
			s.props.SetMust(Interface, name, v)
			changed[name] = dbus.MakeVariant(v)
		}
	}
	if len(changed) == 0 {
		return
	}
	if err := s.conn.Emit(ObjectPath, "org.freedesktop.DBus.Properties.PropertiesChanged",
		Interface, changed, []string{}); err != nil {
		s.log.Warn("D-Bus PropertiesChanged not sent", "error", err)
	}
}

// EmitJobStarted emits JobStarted(s job, s run_id, b dry_run).
func (s *Server) EmitJobStarted(job, runID string, dryRun bool) error {
	return s.emit("JobStarted", job, runID, dryRun)
}

// EmitJobFinished emits JobFinished(s job, s run_id, s outcome, s summary).
func (s *Server) EmitJobFinished(job, runID, outcome, summary string) error {
	return s.emit("JobFinished", job, runID, outcome, summary)
}

// EmitEvent emits the signal for a job event, if its kind has one:
// DriftDetected(s run_id, s image, s reference, s digest, s message),
// SignatureRejected(s run_id, s image, s reference, s message),
// QuotaExceeded(s run_id, t bytes, s message),
// NewerVersion(s run_id, s image, s reference, s newer, s message).
// Other kinds emit nothing.
func (s *Server) EmitEvent(runID string, ev report.Event) error {
	switch ev.Kind {
	case report.EventDriftDetected:
		return s.emit("DriftDetected", runID, ev.Image, ev.Reference, ev.Digest, ev.Message)
	case report.EventSignatureRejected:
		return s.emit("SignatureRejected", runID, ev.Image, ev.Reference, ev.Message)
	case report.EventQuotaExceeded:
		return s.emit("QuotaExceeded", runID, uint64(max(ev.Bytes, 0)), ev.Message)
	case report.EventNewerVersion:
		return s.emit("NewerVersion", runID, ev.Image, ev.Reference, ev.Newer, ev.Message)
	}
	return nil
}

func (s *Server) emit(signal string, args ...any) error {
	if err := s.conn.Emit(ObjectPath, Interface+"."+signal, args...); err != nil {
		return fmt.Errorf("dbusapi: emitting %s: %w", signal, err)
	}
	return nil
}

func cloneStatus(st Status) Status {
	st.Jobs = append([]Job(nil), st.Jobs...)
	return st
}
