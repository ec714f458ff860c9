package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/service/daemon"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/worker"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

// The files packaging installs, tested against the agent and the daemon.
const (
	shippedBusPolicy    = "../../units/dbus/io.github.stowage.Stowage1.conf"
	shippedPolkitAction = "../../units/polkit/io.github.stowage.policy"
)

// actorEnv makes the test binary a one-shot Actor client (see TestMain):
// "prune" or "pull:REF", against the system bus in DBUS_SYSTEM_BUS_ADDRESS.
const actorEnv = "STWG_AGENT_ACTOR"

func TestMain(m *testing.M) {
	if what := os.Getenv(actorEnv); what != "" {
		os.Exit(actorMain(what))
	}
	os.Exit(m.Run())
}

// actorMain calls the Actor as this process's uid: exit 0 and the run id on
// stdout, 3 for AccessDenied, 1 for any other error.
func actorMain(what string) int {
	conn, err := dbusapi.Connect(true)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	a, err := New(Options{ConnectSystem: func() (*dbus.Conn, error) { return conn, nil }})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	a.sys = conn
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var id string
	if ref, ok := strings.CutPrefix(what, "pull:"); ok {
		id, err = a.Pull(ctx, ref)
	} else {
		id, err = a.Prune(ctx)
	}
	var derr dbus.Error
	switch {
	case errors.As(err, &derr) && derr.Name == dbusapi.ErrorAccessDenied:
		fmt.Fprintln(os.Stderr, err)
		return 3
	case err != nil:
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(id)
	return 0
}

// notifyServer records Notify calls on the session bus, as a desktop's
// notification daemon would receive them.
type notifyServer struct {
	mu    sync.Mutex
	next  uint32
	calls chan notifyCall
}

type notifyCall struct {
	app, summary, body string
	replaces           uint32
	urgency            byte
}

func (s *notifyServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	s.next++
	id := s.next
	s.mu.Unlock()
	u, _ := hints["urgency"].Value().(byte)
	s.calls <- notifyCall{app: app, summary: summary, body: body, replaces: replaces, urgency: u}
	return id, nil
}

func startNotifyServer(t *testing.T, bus *testenv.DBus) *notifyServer {
	t.Helper()
	c, err := dbusapi.ConnectAddress(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ns := &notifyServer{calls: make(chan notifyCall, 16)}
	if err := c.Export(ns, notify.ServicePath, "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if reply, err := c.RequestName(notify.ServiceName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName %s: %v %v", notify.ServiceName, reply, err)
	}
	return ns
}

// systemDaemon is a real stowage daemon in system mode on a private
// system bus; its workers are sh scripts that print the findings in
// eventsFile as their report (and their argument list as the summary).
type systemDaemon struct {
	c      *client.Client
	cancel context.CancelFunc
	done   chan error
}

func startSystemDaemon(t *testing.T, bus *testenv.DBus, dir, eventsFile string) *systemDaemon {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\n[metrics]\ntextfile = \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	script := `printf '{"job":"%s","summary":"args %s","events":%s,"metrics":{}}\n' "$2" "$*" "$(cat ` + eventsFile + `)"`
	sock := filepath.Join(dir, "run", "stowage.sock")
	d, err := daemon.New(daemon.Options{
		System: true, Version: "test", Jobs: testjobs.Registry(),
		LoadPolicy: func() (*policy.Snapshot, error) { return policy.LoadSnapshot(policy.LoadOptions{Path: pol}) },
		Runs:       runs.New(db, 0),
		Spawner:    &worker.Spawner{Exe: "/bin/sh", GlobalArgs: []string{"-c", script, "sh"}, Env: os.Environ()},
		Logger:     testLogger(t, "daemon"),
		SocketPath: sock, State: db, BusAddress: bus.Address,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sd := &systemDaemon{c: client.New(sock, nil), cancel: cancel, done: make(chan error, 1)}
	go func() { sd.done <- d.Run(ctx) }()
	waitFor(t, "system daemon on the bus", func() bool {
		st, err := sd.c.Status(t.Context())
		return err == nil && strings.Contains(st.Bus, dbusapi.BusName)
	})
	t.Cleanup(func() { sd.stop(t) })
	return sd
}

func (sd *systemDaemon) stop(t *testing.T) {
	t.Helper()
	sd.cancel()
	select {
	case err := <-sd.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
		sd.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop")
	}
	sd.c.Close()
}

func (sd *systemDaemon) run(t *testing.T, job string) *api.Run {
	t.Helper()
	r, err := sd.c.Trigger(t.Context(), job, false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = sd.c.Wait(t.Context(), r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("%s run: %+v %v", job, r, err)
	}
	return r
}

// handled is one finished run the agent handled.
type handled struct {
	job, runID string
	sent       *notify.Sent
	err        error
}

type runningAgent struct {
	a       *Agent
	handled chan handled
	cancel  context.CancelFunc
	done    chan error
}

// startAgent runs an Agent against the system bus with a notifier on the
// session bus keeping its memory in stateDir.
func startAgent(t *testing.T, sysBus, sessionBus *testenv.DBus, stateDir string) *runningAgent {
	t.Helper()
	return startAgentAt(t, func() string { return sysBus.Address }, sessionBus, stateDir)
}

// startAgentAt is startAgent with the system bus address read at each
// connection attempt.
func startAgentAt(t *testing.T, sysAddr func() string, sessionBus *testenv.DBus, stateDir string) *runningAgent {
	t.Helper()
	session, err := dbusapi.ConnectAddress(sessionBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(notify.Options{Conn: session, State: db, Policy: policy.Default().Notify, Events: testjobs.Registry().EventKinds()})
	if err != nil {
		t.Fatal(err)
	}
	ra := &runningAgent{handled: make(chan handled, 16), done: make(chan error, 1)}
	ra.a, err = New(Options{
		ConnectSystem: func() (*dbus.Conn, error) { return dbusapi.ConnectAddress(sysAddr()) },
		Logger:        testLogger(t, "agent"),
		State:         db,
		RetryMin:      20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Handled: func(job, runID string, sent *notify.Sent, err error) {
			ra.handled <- handled{job, runID, sent, err}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra.cancel = cancel
	go func() { ra.done <- ra.a.Run(ctx, n) }()
	waitFor(t, "agent subscribed", func() bool { _, err := ra.a.conn(); return err == nil })
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-ra.done:
			if err != nil {
				t.Errorf("agent Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
		session.Close()
	}
	t.Cleanup(stop)
	ra.cancel = stop
	return ra
}

func (ra *runningAgent) next(t *testing.T, runID string) handled {
	t.Helper()
	select {
	case h := <-ra.handled:
		if h.runID != runID {
			t.Fatalf("agent handled run %s (%+v), want %s", h.runID, h, runID)
		}
		if h.err != nil {
			t.Fatalf("agent handling run %s: %v", runID, h.err)
		}
		return h
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not handle run %s", runID)
		return handled{}
	}
}

func writeEvents(t *testing.T, path string, refs ...string) {
	t.Helper()
	var evs []string
	for _, ref := range refs {
		evs = append(evs, fmt.Sprintf(`{"kind":"drift_detected","severity":"normal","topic":"refresh:%s","reference":"%s","digest":"sha256:aa","message":"%s changed in its registry"}`, ref, ref, ref))
	}
	if err := os.WriteFile(path, []byte("["+strings.Join(evs, ",")+"]"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func noNotification(t *testing.T, ns *notifyServer) {
	t.Helper()
	select {
	case c := <-ns.calls:
		t.Fatalf("unexpected notification %+v", c)
	case <-time.After(300 * time.Millisecond):
	}
}

func nextNotification(t *testing.T, ns *notifyServer) notifyCall {
	t.Helper()
	select {
	case c := <-ns.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
		return notifyCall{}
	}
}

// TestRelay: a system run's findings reach the session bus as one
// notification; a finding is never shown twice, neither by the next run,
// nor after the daemon exited and came back, nor after the agent
// restarted; the agent waits for a daemon that is not running and ignores
// a JobFinished forged by another peer.
func TestRelay(t *testing.T) {
	testenv.RequireRoot(t)
	sysBus := testenv.StartSystemDBus(t, shippedBusPolicy)
	sessionBus := testenv.StartDBus(t, "session")
	ns := startNotifyServer(t, sessionBus)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	agentState := filepath.Join(dir, "agent-state")

	// The agent starts before the daemon runs (D-Bus activation would
	// start it on demand) and waits without failing.
	ag := startAgent(t, sysBus, sessionBus, agentState)
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-ag.done:
		t.Fatalf("agent returned without a daemon: %v", err)
	default:
	}

	sd := startSystemDaemon(t, sysBus, filepath.Join(dir, "d1"), events)
	writeEvents(t, events, "localhost/app:1")
	r := sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent == nil || h.sent.Findings != 1 {
		t.Fatalf("first run: sent %+v", h.sent)
	}
	c := nextNotification(t, ns)
	if c.app != "stowage" || !strings.Contains(c.summary, "refresh") || !strings.Contains(c.body, "localhost/app:1 changed in its registry") || c.urgency != 1 {
		t.Fatalf("notification %+v", c)
	}

	// The same finding again: nothing.
	r = sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent != nil {
		t.Fatalf("repeat notified: %+v", h.sent)
	}
	noNotification(t, ns)

	// A forged JobFinished from another peer on the system bus is not
	// relayed (the next run handled is the daemon's own).
	forger, err := dbusapi.ConnectAddress(sysBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	if err := forger.Emit(dbusapi.ObjectPath, dbusapi.Interface+".JobFinished", "refresh", "forged-1", "succeeded", "x"); err != nil {
		t.Fatal(err)
	}

	// The daemon exits (idle) and comes back: the agent follows.
	sd.stop(t)
	sd = startSystemDaemon(t, sysBus, filepath.Join(dir, "d2"), events)
	writeEvents(t, events, "localhost/app:1", "localhost/db:2")
	r = sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent == nil || h.sent.Findings != 1 {
		t.Fatalf("after the daemon came back: sent %+v", h.sent)
	}
	if c := nextNotification(t, ns); !strings.Contains(c.body, "localhost/db:2") || strings.Contains(c.body, "localhost/app:1") {
		t.Fatalf("notification %+v, want only the new finding", c)
	}

	// The agent restarts: what it showed stays shown.
	ag.cancel()
	ag = startAgent(t, sysBus, sessionBus, agentState)
	r = sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent != nil {
		t.Fatalf("after an agent restart a seen finding was notified: %+v", h.sent)
	}
	noNotification(t, ns)
}

// TestCatchUp: a run that finished while no agent listened is shown once
// the agent finds the daemon running again (its name gets an owner), and
// only once: neither a restarted agent nor the next run repeats it.
func TestCatchUp(t *testing.T) {
	testenv.RequireRoot(t)
	sysBus := testenv.StartSystemDBus(t, shippedBusPolicy)
	sessionBus := testenv.StartDBus(t, "session")
	ns := startNotifyServer(t, sessionBus)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	agentState := filepath.Join(dir, "agent-state")

	// Nobody logged in: the daemon runs, finds something, and exits.
	sd := startSystemDaemon(t, sysBus, filepath.Join(dir, "d"), events)
	writeEvents(t, events, "localhost/missed:1")
	missed := sd.run(t, "refresh")
	sd.stop(t)

	// The agent starts while the daemon is not running: nothing to do.
	ag := startAgent(t, sysBus, sessionBus, agentState)
	select {
	case h := <-ag.handled:
		t.Fatalf("handled %+v without a daemon", h)
	case <-time.After(300 * time.Millisecond):
	}
	// The daemon comes back (its timer, say): the missed run is shown.
	sd = startSystemDaemon(t, sysBus, filepath.Join(dir, "d"), events)
	if h := ag.next(t, missed.ID); h.sent == nil {
		t.Fatal("the missed run was not shown")
	}
	if c := nextNotification(t, ns); !strings.Contains(c.body, "localhost/missed:1") {
		t.Fatalf("notification %+v", c)
	}

	// A restarted agent, the daemon running: nothing left to catch up.
	ag.cancel()
	ag = startAgent(t, sysBus, sessionBus, agentState)
	select {
	case h := <-ag.handled:
		t.Fatalf("caught up again with %+v", h)
	case <-time.After(300 * time.Millisecond):
	}
	r := sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent != nil {
		t.Fatalf("the missed finding was shown twice: %+v", h.sent)
	}
	noNotification(t, ns)
}

// TestSystemBusRestart: when the system bus itself goes away the agent
// keeps running, reconnects once a bus is back, and relays its daemon's
// runs again.
func TestSystemBusRestart(t *testing.T) {
	testenv.RequireRoot(t)
	sessionBus := testenv.StartDBus(t, "session")
	ns := startNotifyServer(t, sessionBus)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	bus1 := testenv.StartSystemDBus(t, shippedBusPolicy)
	var mu sync.Mutex
	addr := bus1.Address
	ag := startAgentAt(t, func() string { mu.Lock(); defer mu.Unlock(); return addr }, sessionBus, filepath.Join(dir, "agent-state"))

	// Kill the first bus daemon (it tells its own pid).
	var pid uint32
	c, err := dbusapi.ConnectAddress(bus1.Address)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, "org.freedesktop.DBus").Store(&pid); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the agent noticing the bus is gone", func() bool { _, err := ag.a.conn(); return err != nil })
	time.Sleep(100 * time.Millisecond) // a few failed reconnects
	select {
	case err := <-ag.done:
		t.Fatalf("agent returned when the system bus went away: %v", err)
	default:
	}

	bus2 := testenv.StartSystemDBus(t, shippedBusPolicy)
	mu.Lock()
	addr = bus2.Address
	mu.Unlock()
	waitFor(t, "the agent reconnecting", func() bool { _, err := ag.a.conn(); return err == nil })
	sd := startSystemDaemon(t, bus2, filepath.Join(dir, "d"), events)
	writeEvents(t, events, "localhost/app:1")
	r := sd.run(t, "refresh")
	if h := ag.next(t, r.ID); h.sent == nil {
		t.Fatal("nothing relayed after the reconnect")
	}
	nextNotification(t, ns)
}

// TestActor: the Actor's calls reach the system daemon: Prune starts a real
// prune run, Pull a refresh run pulling the reference, Report renders a run.
func TestActor(t *testing.T) {
	testenv.RequireRoot(t)
	sysBus := testenv.StartSystemDBus(t, shippedBusPolicy)
	sessionBus := testenv.StartDBus(t, "session")
	startNotifyServer(t, sessionBus)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	writeEvents(t, events)
	sd := startSystemDaemon(t, sysBus, filepath.Join(dir, "d"), events)
	ag := startAgent(t, sysBus, sessionBus, filepath.Join(dir, "agent-state"))
	ctx := t.Context()

	id, err := ag.a.Prune(ctx)
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	r, err := sd.c.Wait(ctx, id)
	if err != nil || r.Job != "prune" || r.DryRun || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("prune run %+v %v", r, err)
	}
	ag.next(t, id)

	id, err = ag.a.Pull(ctx, "localhost/app:1")
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	r, err = sd.c.Wait(ctx, id)
	if err != nil || r.Job != "refresh" || !strings.Contains(r.Summary, "--pull=localhost/app:1") {
		t.Fatalf("pull run %+v %v", r, err)
	}
	ag.next(t, id)

	text, err := ag.a.Report(ctx, id)
	if err != nil || !strings.HasPrefix(text, "run "+id+": refresh succeeded\n") || !strings.Contains(text, "--pull=localhost/app:1") {
		t.Fatalf("Report = %q, %v", text, err)
	}
	var derr dbus.Error
	if _, err := ag.a.Report(ctx, "no-such-run"); !errors.As(err, &derr) || derr.Name != dbusapi.ErrorUnknownRun {
		t.Fatalf("Report(no-such-run): %v", err)
	}
	if _, err := ag.a.Pull(ctx, "--all"); !errors.As(err, &derr) || derr.Name != dbusapi.ErrorInvalidArgs {
		t.Fatalf("Pull(--all): %v", err)
	}
}

// TestActorAuthorization: a desktop user's agent acts on the system
// service only with a polkit grant of io.github.stowage.manage: with the
// real polkitd, nobody (granted) may prune and pull, uid 1 (not granted)
// gets AccessDenied; without polkitd nobody is refused too.
func TestActorAuthorization(t *testing.T) {
	testenv.RequireRoot(t)
	sysBus := testenv.StartSystemDBus(t, shippedBusPolicy, testenv.PolkitBusPolicy)
	pk := testenv.StartPolkit(t, sysBus, []string{shippedPolkitAction}, `
polkit.addRule(function(action, subject) {
    if (action.id == "io.github.stowage.manage" && subject.user == "nobody") {
        return polkit.Result.YES;
    }
});
`)
	dir := t.TempDir()
	events := filepath.Join(dir, "events.json")
	writeEvents(t, events)
	sd := startSystemDaemon(t, sysBus, filepath.Join(dir, "d"), events)
	exe := actorBinary(t)
	const nobody, daemonUID = 65534, 1
	act := func(uid uint32, what string) (string, int) {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/", actorEnv + "=" + what, "DBUS_SYSTEM_BUS_ADDRESS=" + sysBus.Address}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		t.Logf("uid %d %s: exit %d %s %s", uid, what, code, strings.TrimSpace(string(out)), strings.TrimSpace(stderr.String()))
		return strings.TrimSpace(string(out)), code
	}

	id, code := act(nobody, "prune")
	if code != 0 {
		t.Fatalf("nobody Prune with a polkit grant: exit %d\npolkitd:\n%s", code, pk.Log())
	}
	if r, err := sd.c.Wait(t.Context(), id); err != nil || r.Job != "prune" || r.DryRun {
		t.Fatalf("nobody's prune run %+v %v", r, err)
	}
	if _, code := act(daemonUID, "prune"); code != 3 {
		t.Errorf("uid 1 Prune without a grant: exit %d, want AccessDenied (3)", code)
	}
	if _, code := act(daemonUID, "pull:localhost/app:1"); code != 3 {
		t.Errorf("uid 1 Pull without a grant: exit %d, want AccessDenied (3)", code)
	}
	pk.Stop()
	if _, code := act(nobody, "pull:localhost/app:1"); code != 3 {
		t.Errorf("nobody Pull without polkitd: exit %d, want AccessDenied (3)", code)
	}
	hist, err := sd.c.History(t.Context(), "refresh", 10)
	if err != nil || len(hist) != 0 {
		t.Fatalf("refused pulls ran: %d refresh runs, %v", len(hist), err)
	}
}

// actorBinary copies the test binary where another uid may run it.
func actorBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "stwg-agent-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "agent.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type testWriter struct {
	t      *testing.T
	prefix string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(w.prefix + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T, prefix string) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t, prefix + ": "}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
