package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

func TestPlanActions(t *testing.T) {
	quota := report.Event{Kind: report.EventQuotaExceeded, Severity: report.SeverityNormal, Topic: "prune-quota",
		Bytes: 1_500_000_000, Message: "storage over its quota: 1.4GiB to free"}
	pulled := report.Event{Kind: report.EventImagePulled, Severity: report.SeverityLow, Reference: "a:1"}
	for _, tc := range []struct {
		name  string
		fresh []report.Event
		all   []report.Event
		want  []string
		ref   string
	}{
		{"drift of one reference", []report.Event{drift("a:1", "d")}, nil,
			[]string{"pull", "Pull update", "report", "Show report", "snooze", "Don't remind me"}, "a:1"},
		{"drift pulled by the run (pull mode)", []report.Event{drift("a:1", "d")}, []report.Event{drift("a:1", "d"), pulled},
			[]string{"report", "Show report", "snooze", "Don't remind me"}, "a:1"},
		{"newer version", []report.Event{newer("a:1.25", "a:1.26")}, nil,
			[]string{"pull", "Pull update", "report", "Show report", "snooze", "Don't remind me"}, "a:1.25"},
		{"newer version pulled by the run", []report.Event{newer("a:1.25", "a:1.26")},
			[]report.Event{{Kind: report.EventImagePulled, Reference: "a:1.26"}},
			[]string{"report", "Show report", "snooze", "Don't remind me"}, "a:1.25"},
		{"signature of one reference: no pull", []report.Event{rejected("b:1")}, nil,
			[]string{"report", "Show report", "snooze", "Don't remind me"}, "b:1"},
		{"several references", []report.Event{drift("a:1", "d"), rejected("b:1")}, nil,
			[]string{"report", "Show report"}, ""},
		{"quota exceeded", []report.Event{quota}, nil,
			[]string{"prune", "Free 1.5 GB now", "report", "Show report"}, ""},
		{"quota exceeded, the run freed part of it", []report.Event{quota}, []report.Event{quota,
			{Kind: report.EventImageRemoved, Bytes: 1_000_000_000}, {Kind: report.EventLayerRemoved, Bytes: 300_000_000}},
			[]string{"prune", "Free 200 MB now", "report", "Show report"}, ""},
		{"quota exceeded, the run freed it", []report.Event{quota}, []report.Event{quota,
			{Kind: report.EventImageRemoved, Bytes: 1_500_000_000}},
			[]string{"report", "Show report"}, ""},
		{"no reference", []report.Event{lowEvent()}, nil, []string{"report", "Show report"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := tc.all
			if all == nil {
				all = tc.fresh
			}
			acts, ref := planActions(tc.fresh, all)
			if got := actionArray(acts); !reflect.DeepEqual(got, tc.want) || ref != tc.ref {
				t.Errorf("planActions = %q, %q; want %q, %q", got, ref, tc.want, tc.ref)
			}
		})
	}
}

// actor records the actions asked of it.
type actor struct {
	mu     sync.Mutex
	prunes int
	pulls  []string
	fail   error
}

func (a *actor) Prune(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.prunes++
	return "prune-1", a.fail
}

func (a *actor) Pull(_ context.Context, ref string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pulls = append(a.pulls, ref)
	return "refresh-1", a.fail
}

func (a *actor) Report(_ context.Context, runID string) (string, error) {
	return "run " + runID + ": the report\n", nil
}

func (a *actor) state() (int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.prunes, append([]string(nil), a.pulls...)
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

type actionEnv struct {
	bus     *testenv.DBus
	srv     *server
	srvConn *dbus.Conn
	dir     string // state dir
	reports string
	opened  string // file the opener writes the opened path to
	actor   *actor
}

func newActionEnv(t *testing.T) *actionEnv {
	e := &actionEnv{bus: testenv.StartDBus(t, "session"), srv: &server{caps: []string{"body", "actions"}},
		dir: t.TempDir(), reports: filepath.Join(t.TempDir(), "reports"), actor: &actor{}}
	e.opened = filepath.Join(t.TempDir(), "opened")
	e.srvConn = startServer(t, e.bus, e.srv)
	return e
}

func (e *actionEnv) notifier(t *testing.T, now func() time.Time) *Notifier {
	t.Helper()
	c, err := dbus.Connect(e.bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	db, err := state.Open(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{Conn: c, State: db, Policy: policy.Notify{Desktop: true, MinUrgency: policy.UrgencyNormal},
		Events: testjobs.Registry().EventKinds(), Clock: nowClock(now), Actor: e.actor, ReportDir: e.reports,
		Opener: []string{"sh", "-c", `printf %s "$1" > "$0"`, e.opened}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// invoke emits ActionInvoked from the notification server's connection.
func (e *actionEnv) invoke(t *testing.T, id uint32, key string) {
	t.Helper()
	if err := e.srvConn.Emit(ServicePath, "org.freedesktop.Notifications.ActionInvoked", id, key); err != nil {
		t.Fatal(err)
	}
}

func (e *actionEnv) lastCall(t *testing.T) call {
	t.Helper()
	calls := e.srv.Calls()
	if len(calls) == 0 {
		t.Fatal("no Notify call")
	}
	return calls[len(calls)-1]
}

func fixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// TestActions: each kind of notification offers its actions, and invoking
// one through the server does what it says.
func TestActions(t *testing.T) {
	ctx := context.Background()
	e := newActionEnv(t)
	n := e.notifier(t, fixedNow)

	// A drift of one reference: pull, report, snooze; pull calls the Actor.
	sent, err := n.NotifyRun(ctx, "refresh", "r1", []report.Event{drift("a:1", "sha256:1")})
	if err != nil || sent == nil {
		t.Fatalf("drift: %v %v", sent, err)
	}
	if got, want := e.lastCall(t).Actions, []string{"pull", "Pull update", "report", "Show report", "snooze", "Don't remind me"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("drift actions %q, want %q", got, want)
	}
	if !n.ActionsOpen() {
		t.Fatal("ActionsOpen false with a notification with actions shown")
	}
	// An action the notification does not offer, and one from a sender
	// that is not the server, are ignored.
	e.invoke(t, sent.ID, "prune")
	other, err := dbus.Connect(e.bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Emit(ServicePath, "org.freedesktop.Notifications.ActionInvoked", sent.ID, "pull"); err != nil {
		t.Fatal(err)
	}
	e.invoke(t, sent.ID, "pull")
	eventually(t, "the pull", func() bool { _, p := e.actor.state(); return len(p) > 0 })
	time.Sleep(100 * time.Millisecond) // let a wrongly accepted action land
	if prunes, pulls := e.actor.state(); prunes != 0 || !reflect.DeepEqual(pulls, []string{"a:1"}) {
		t.Fatalf("after pull: prunes %d, pulls %q (want 0, [a:1])", prunes, pulls)
	}
	if n.ActionsOpen() {
		t.Fatal("ActionsOpen true after the only notification was acted on")
	}

	// Quota exceeded: "Free N now" calls Prune.
	quota := report.Event{Kind: report.EventQuotaExceeded, Severity: report.SeverityNormal, Topic: "prune-quota",
		Bytes: 2_000_000_000, Message: "storage over its quota: 1.9GiB to free (usage 11GiB, limit 9.3GiB)"}
	sent, err = n.NotifyRun(ctx, "prune", "r2", []report.Event{quota})
	if err != nil || sent == nil {
		t.Fatalf("quota: %v %v", sent, err)
	}
	c := e.lastCall(t)
	if want := []string{"prune", "Free 2 GB now", "report", "Show report"}; !reflect.DeepEqual(c.Actions, want) {
		t.Fatalf("quota actions %q, want %q", c.Actions, want)
	}
	if c.Body != quota.Message {
		t.Errorf("quota body %q", c.Body)
	}
	e.invoke(t, sent.ID, "prune")
	eventually(t, "the prune", func() bool { p, _ := e.actor.state(); return p == 1 })

	// Several references: report only; it writes RUN.txt 0600 and opens it.
	sent, err = n.NotifyRun(ctx, "verify", "verify-42", []report.Event{rejected("b:1"), rejected("c:1")})
	if err != nil || sent == nil {
		t.Fatalf("several: %v %v", sent, err)
	}
	if want := []string{"report", "Show report"}; !reflect.DeepEqual(e.lastCall(t).Actions, want) {
		t.Fatalf("several references: actions %q, want %q", e.lastCall(t).Actions, want)
	}
	e.invoke(t, sent.ID, "report")
	path := filepath.Join(e.reports, "verify-42.txt")
	eventually(t, "the opener", func() bool { b, _ := os.ReadFile(e.opened); return string(b) == path })
	data, err := os.ReadFile(path)
	if err != nil || string(data) != "run verify-42: the report\n" {
		t.Fatalf("report file: %q %v", data, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("report file mode: %v %v", fi.Mode(), err)
	}
}

// TestSnooze: "Don't remind me" silences findings about the reference,
// across a restart, until un-snoozed; other references are still shown.
func TestSnooze(t *testing.T) {
	ctx := context.Background()
	e := newActionEnv(t)
	n := e.notifier(t, fixedNow)
	sent, err := n.NotifyRun(ctx, "verify", "r1", []report.Event{rejected("b:1")})
	if err != nil || sent == nil {
		t.Fatalf("first: %v %v", sent, err)
	}
	e.invoke(t, sent.ID, "snooze")
	db, err := state.Open(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the snooze", func() bool { s, _ := ListSnoozed(db); return len(s) == 1 })
	if s, _ := ListSnoozed(db); s[0].Ref != "b:1" || !s[0].Created.Equal(fixedNow()) {
		t.Fatalf("snoozed %+v", s)
	}

	n.Close()
	n2 := e.notifier(t, fixedNow) // a restarted daemon
	calls := len(e.srv.Calls())
	newFinding := report.Event{Kind: report.EventSignatureRejected, Severity: report.SeverityCritical, Topic: "sig:b:1",
		Reference: "b:1", Digest: "sha256:other", Message: "unsigned b:1 again"}
	if sent, err := n2.NotifyRun(ctx, "verify", "r2", []report.Event{newFinding}); err != nil || sent != nil {
		t.Fatalf("snoozed reference notified: %+v %v", sent, err)
	}
	sent, err = n2.NotifyRun(ctx, "verify", "r3", []report.Event{newFinding, rejected("c:1")})
	if err != nil || sent == nil || sent.Findings != 1 || sent.Body != "unsigned c:1" {
		t.Fatalf("other reference beside a snoozed one: %+v %v", sent, err)
	}
	if got := len(e.srv.Calls()); got != calls+1 {
		t.Fatalf("%d Notify calls, want %d", got, calls+1)
	}

	if err := Unsnooze(db, "b:1"); err != nil {
		t.Fatal(err)
	}
	if err := Unsnooze(db, "b:1"); !errors.Is(err, ErrNotSnoozed) {
		t.Fatalf("second Unsnooze: %v, want ErrNotSnoozed", err)
	}
	if sent, err := n2.NotifyRun(ctx, "verify", "r4", []report.Event{newFinding}); err != nil || sent == nil {
		t.Fatalf("un-snoozed reference not notified: %+v %v", sent, err)
	}
}

// TestActionsOpen: a notification with actions holds the process up until
// the server closes it or its bound passes; a restarted process still
// knows it; a server without the "actions" capability gets none.
func TestActionsOpen(t *testing.T) {
	ctx := context.Background()
	e := newActionEnv(t)
	now := fixedNow()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	n := e.notifier(t, clock)

	a, err := n.NotifyRun(ctx, "refresh", "r1", []report.Event{drift("a:1", "sha256:1")})
	if err != nil || a == nil {
		t.Fatal(a, err)
	}
	b, err := n.NotifyRun(ctx, "refresh", "r2", []report.Event{drift("b:1", "sha256:1")})
	if err != nil || b == nil || b.ID == a.ID {
		t.Fatal(b, err)
	}
	// Closed by the server: a stays open.
	if err := e.srvConn.Emit(ServicePath, "org.freedesktop.Notifications.NotificationClosed", b.ID, uint32(2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NotificationClosed", func() bool {
		n.openMu.Lock()
		defer n.openMu.Unlock()
		_, ok := n.open[b.ID]
		return !ok
	})
	if !n.ActionsOpen() {
		t.Fatal("ActionsOpen false with a still open")
	}

	// A restarted process knows a is open.
	n.Close()
	n2 := e.notifier(t, clock)
	if !n2.ActionsOpen() {
		t.Fatal("restarted notifier forgot the open notification")
	}
	// The server never closes a: the bound releases the hold.
	mu.Lock()
	now = now.Add(DefaultHold)
	mu.Unlock()
	if n2.ActionsOpen() {
		t.Fatal("ActionsOpen true past the bound")
	}

	// The server leaves the bus: its notifications are gone.
	d, err := n2.NotifyRun(ctx, "refresh", "r4", []report.Event{drift("d:1", "sha256:1")})
	if err != nil || d == nil || !n2.ActionsOpen() {
		t.Fatal(d, err, n2.ActionsOpen())
	}
	if _, err := e.srvConn.ReleaseName(ServiceName); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server's notifications forgotten", func() bool { return !n2.ActionsOpen() })
	if r, err := e.srvConn.RequestName(ServiceName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s again: %v %v", ServiceName, r, err)
	}

	// No "actions" capability: sent without actions, nothing held.
	e.srv.mu.Lock()
	e.srv.caps = []string{"body"}
	e.srv.mu.Unlock()
	c, err := n2.NotifyRun(ctx, "refresh", "r3", []report.Event{drift("c:1", "sha256:1")})
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if got := e.lastCall(t).Actions; len(got) != 0 || n2.ActionsOpen() {
		t.Fatalf("without the capability: actions %q, open %v", got, n2.ActionsOpen())
	}
}

func TestDefaultOpener(t *testing.T) {
	t.Setenv("INVOCATION_ID", "")
	if got := DefaultOpener(); !reflect.DeepEqual(got, []string{"xdg-open"}) {
		t.Errorf("outside systemd: %q", got)
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "systemd-run"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	t.Setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
	if got := DefaultOpener(); got[0] != "systemd-run" || got[len(got)-1] != "xdg-open" || !slices.Contains(got, "--scope") {
		t.Errorf("under systemd: %q", got)
	}
}

// nowClock is a test clock reading now (time is faked here, nothing else).
type nowClock func() time.Time

func (f nowClock) Now() time.Time                       { return f() }
func (nowClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
