package notify

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

// call is one Notify call as the server received it.
type call struct {
	App, Icon, Summary, Body string
	Replaces                 uint32
	Actions                  []string
	Hints                    map[string]dbus.Variant
	Timeout                  int32
	Returned                 uint32
}

// server implements org.freedesktop.Notifications on the private bus and
// records every Notify, assigning ids like a notification daemon.
type server struct {
	mu    sync.Mutex
	next  uint32
	calls []call
	// caps are the advertised capabilities; nil means just "body".
	caps []string
}

func (s *server) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := replaces
	if id == 0 {
		s.next++
		id = s.next
	}
	s.calls = append(s.calls, call{app, icon, summary, body, replaces, actions, hints, timeout, id})
	return id, nil
}

func (s *server) GetCapabilities() ([]string, *dbus.Error) {
	if s.caps != nil {
		return s.caps, nil
	}
	return []string{"body"}, nil
}

func (s *server) Calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

func startServer(t *testing.T, bus *testenv.DBus, srv *server) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Export(srv, ServicePath, "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.RequestName(ServiceName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s: %v %v", ServiceName, r, err)
	}
	return c
}

func newNotifier(t *testing.T, bus *testenv.DBus, stateDir string, p policy.Notify) *Notifier {
	t.Helper()
	c, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	db, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(Options{Conn: c, State: db, Policy: p, Events: testjobs.Registry().EventKinds(),
		Clock: clock.At(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func drift(ref, digest string) report.Event {
	return report.Event{Kind: report.EventDriftDetected, Severity: report.SeverityNormal, Topic: "drift:" + ref,
		Reference: ref, Image: "img-" + ref, Digest: digest, Message: "newer " + ref + " " + digest}
}

func rejected(ref string) report.Event {
	return report.Event{Kind: report.EventSignatureRejected, Severity: report.SeverityCritical, Topic: "sig:" + ref,
		Reference: ref, Message: "unsigned " + ref}
}

func lowEvent() report.Event {
	return report.Event{Kind: report.EventImageRemoved, Severity: report.SeverityLow, Image: "abc", Bytes: 10,
		Message: "removed abc"}
}

func TestNotifyRun(t *testing.T) {
	ctx := context.Background()
	bus := testenv.StartDBus(t, "session")
	srv := &server{}
	srvConn := startServer(t, bus, srv)
	dir := t.TempDir()
	pol := policy.Notify{Desktop: true, MinUrgency: policy.UrgencyNormal}
	n := newNotifier(t, bus, dir, pol)

	// Run 1: one drift (normal) and one low event (below min_urgency).
	sent, err := n.NotifyRun(ctx, "refresh", "r1", []report.Event{drift("a:1", "sha256:1"), lowEvent()})
	if err != nil || sent == nil {
		t.Fatalf("run 1: %v %v", sent, err)
	}
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("run 1: %d Notify calls, want 1", len(calls))
	}
	c := calls[0]
	if c.App != "stowage" || c.Replaces != 0 || c.Returned != sent.ID || sent.Topic != "drift:a:1" {
		t.Errorf("run 1 call %+v, sent %+v", c, sent)
	}
	if c.Hints["urgency"].Value() != byte(1) || c.Hints["desktop-entry"].Value() != DesktopEntry {
		t.Errorf("run 1 hints %v", c.Hints)
	}
	if c.Summary != "stowage refresh: newer image available" || c.Body != "newer a:1 sha256:1" {
		t.Errorf("run 1 text %q / %q", c.Summary, c.Body)
	}
	topicA := c.Returned

	// The same findings in a later run: nothing new, nothing sent.
	if sent, err := n.NotifyRun(ctx, "refresh", "r2", []report.Event{drift("a:1", "sha256:1"), lowEvent()}); err != nil || sent != nil {
		t.Fatalf("repeat run: %v %v", sent, err)
	}
	if got := len(srv.Calls()); got != 1 {
		t.Fatalf("repeat run sent a notification (%d calls)", got)
	}

	// Run 3: two new findings, one notification led by the critical one.
	sent, err = n.NotifyRun(ctx, "verify", "r3", []report.Event{drift("a:1", "sha256:2"), rejected("b:1"), rejected("b:1")})
	if err != nil || sent == nil {
		t.Fatalf("run 3: %v %v", sent, err)
	}
	calls = srv.Calls()
	if len(calls) != 2 {
		t.Fatalf("run 3: %d calls in all, want 2", len(calls))
	}
	c = calls[1]
	if c.Replaces != 0 || sent.Topic != "sig:b:1" || c.Hints["urgency"].Value() != byte(2) || sent.Findings != 2 {
		t.Errorf("run 3 call %+v sent %+v", c, sent)
	}
	if c.Summary != "stowage verify: 2 new findings" || c.Body != "newer a:1 sha256:2\nunsigned b:1" {
		t.Errorf("run 3 text %q / %q", c.Summary, c.Body)
	}
	topicB := c.Returned

	// Run 4: a new finding on topic A replaces topic A's notification.
	if _, err := n.NotifyRun(ctx, "refresh", "r4", []report.Event{drift("a:1", "sha256:3")}); err != nil {
		t.Fatal(err)
	}
	calls = srv.Calls()
	if len(calls) != 3 || calls[2].Replaces != topicA || calls[2].Returned != topicA {
		t.Fatalf("run 4: calls %+v, want replaces_id %d", calls[2:], topicA)
	}

	// Restart: a new Notifier over the same state dir repeats nothing and
	// still knows the ids per topic.
	n2 := newNotifier(t, bus, dir, pol)
	old := []report.Event{drift("a:1", "sha256:1"), drift("a:1", "sha256:2"), drift("a:1", "sha256:3"), rejected("b:1")}
	if sent, err := n2.NotifyRun(ctx, "refresh", "r5", old[:3]); err != nil || sent != nil {
		t.Fatalf("after restart: %v %v", sent, err)
	}
	if sent, err := n2.NotifyRun(ctx, "verify", "r5", old[3:]); err != nil || sent != nil {
		t.Fatalf("after restart: %v %v", sent, err)
	}
	if got := len(srv.Calls()); got != 3 {
		t.Fatalf("restart repeated findings: %d calls", got)
	}
	if _, err := n2.NotifyRun(ctx, "verify", "r6", []report.Event{rejected("b:1"), {
		Kind: report.EventSignatureRejected, Severity: report.SeverityCritical, Topic: "sig:b:1",
		Reference: "b:1", Digest: "sha256:new", Message: "unsigned again"}}); err != nil {
		t.Fatal(err)
	}
	calls = srv.Calls()
	if len(calls) != 4 || calls[3].Replaces != topicB || calls[3].Body != "unsigned again" {
		t.Fatalf("after restart, new finding on topic B: %+v (want replaces %d)", calls[3:], topicB)
	}

	// Notification server gone: an error, and the finding is not lost.
	if _, err := srvConn.ReleaseName(ServiceName); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.NotifyRun(ctx, "refresh", "r7", []report.Event{drift("c:1", "sha256:9")}); err == nil {
		t.Fatal("NotifyRun succeeded without a notification server")
	}
	srv2 := &server{next: 100}
	startServer(t, bus, srv2)
	if sent, err := n2.NotifyRun(ctx, "refresh", "r8", []report.Event{drift("c:1", "sha256:9")}); err != nil || sent == nil {
		t.Fatalf("retry after server came back: %v %v", sent, err)
	}
	if got := srv2.Calls(); len(got) != 1 || !strings.Contains(got[0].Body, "c:1") {
		t.Fatalf("retried finding: %+v", got)
	}

	// min_urgency low lets the low event through, once; desktop=false mutes.
	n2.SetPolicy(policy.Notify{Desktop: true, MinUrgency: policy.UrgencyLow})
	sent, err = n2.NotifyRun(ctx, "prune", "r9", []report.Event{lowEvent()})
	if err != nil || sent == nil || sent.Urgency != 0 {
		t.Fatalf("low event with min_urgency low: %+v %v", sent, err)
	}
	if got := srv2.Calls(); len(got) != 2 || got[1].Hints["transient"].Value() != true {
		t.Fatalf("low notification: %+v", got[1:])
	}
	n2.SetPolicy(policy.Notify{Desktop: false, MinUrgency: policy.UrgencyLow})
	if sent, err := n2.NotifyRun(ctx, "refresh", "r10", []report.Event{drift("d:1", "sha256:1")}); err != nil || sent != nil {
		t.Fatalf("desktop=false: %v %v", sent, err)
	}
	if got := len(srv2.Calls()); got != 2 {
		t.Fatalf("desktop=false sent a notification")
	}
}

func TestCompose(t *testing.T) {
	var many []report.Event
	for i := range 10 {
		many = append(many, report.Event{Kind: report.EventVolumeRemoved, Severity: report.SeverityLow,
			Volume: "v" + string(rune('0'+i))})
	}
	for _, tc := range []struct {
		name      string
		events    []report.Event
		topic     string
		summary   string
		bodyLines int
		lastLine  string
		urgency   byte
	}{
		{"single without topic", []report.Event{lowEvent()}, "prune/image_removed",
			"stowage prune: image removed", 1, "removed abc", 0},
		{"critical leads", []report.Event{drift("a", "d"), rejected("b")}, "sig:b",
			"stowage prune: 2 new findings", 2, "unsigned b", 2},
		{"long list is cut", many, "prune/volume_removed", "stowage prune: 10 new findings",
			maxBodyFindings + 1, "… and 2 more", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compose(testjobs.Registry().EventKinds(), "prune", tc.events)
			lines := strings.Split(s.Body, "\n")
			if s.Topic != tc.topic || s.Summary != tc.summary || len(lines) != tc.bodyLines ||
				lines[len(lines)-1] != tc.lastLine || s.Urgency != tc.urgency {
				t.Errorf("compose = %+v", s)
			}
		})
	}
	if s := compose(testjobs.Registry().EventKinds(), "volumes", many[:1]); s.Body != "volume removed v0" {
		t.Errorf("body without message = %q", s.Body)
	}
}

func newer(ref, newerRef string) report.Event {
	return report.Event{Kind: report.EventNewerVersion, Severity: report.SeverityNormal, Reference: ref, Newer: newerRef,
		Topic: "refresh-newer:" + ref, Image: "img", Message: ref + " → " + newerRef}
}

// A newer version is notified once per (reference, newer version); a later
// newer version of the same reference replaces its notification.
func TestNotifyNewerVersion(t *testing.T) {
	ctx := context.Background()
	bus := testenv.StartDBus(t, "session")
	srv := &server{}
	startServer(t, bus, srv)
	n := newNotifier(t, bus, t.TempDir(), policy.Notify{Desktop: true, MinUrgency: policy.UrgencyNormal})

	if _, err := n.NotifyRun(ctx, "refresh", "r1", []report.Event{newer("a:1.25", "a:1.26")}); err != nil {
		t.Fatal(err)
	}
	calls := srv.Calls()
	if len(calls) != 1 || calls[0].Summary != "stowage refresh: newer version available" || calls[0].Body != "a:1.25 → a:1.26" {
		t.Fatalf("first: %+v", calls)
	}
	if sent, err := n.NotifyRun(ctx, "refresh", "r2", []report.Event{newer("a:1.25", "a:1.26")}); err != nil || sent != nil {
		t.Fatalf("repeat: %v %v", sent, err)
	}
	if _, err := n.NotifyRun(ctx, "refresh", "r3", []report.Event{newer("a:1.25", "a:1.27")}); err != nil {
		t.Fatal(err)
	}
	calls = srv.Calls()
	if len(calls) != 2 || calls[1].Replaces != calls[0].Returned {
		t.Fatalf("a newer version on the same topic: %+v", calls)
	}
}
