package dbusapi

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/test/testenv"
)

// testBackend is the daemon side for the tests: RunJob "runs" a job
// asynchronously through the Server, as the daemon does.
type testBackend struct {
	mu     sync.Mutex
	srv    *Server
	calls  []string
	n      int
	pinned []string
}

func (b *testBackend) record(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *testBackend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

var testJobs = []Job{
	{Name: "prune", Schedule: "@daily", LastRun: time.Unix(1700000000, 0), LastOutcome: "success",
		LastSummary: "freed 1 MB", NextRun: time.Unix(1700086400, 0)},
	{Name: "refresh", Schedule: "0 3 * * *"},
}

func (b *testBackend) ListJobs(context.Context) ([]Job, error) {
	b.record("ListJobs")
	return testJobs, nil
}

func (b *testBackend) RunJob(_ context.Context, job string, dryRun bool) (string, error) {
	b.record(fmt.Sprintf("RunJob %s %v", job, dryRun))
	if job != "prune" && job != "refresh" {
		return "", fmt.Errorf("%w: %q", ErrUnknownJob, job)
	}
	b.mu.Lock()
	b.n++
	id := fmt.Sprintf("run-%d", b.n)
	srv := b.srv
	b.mu.Unlock()
	go func() {
		_ = srv.EmitJobStarted(job, id, dryRun)
		srv.Update(func(s *Status) {
			s.State = "running"
			for i := range s.Jobs {
				if s.Jobs[i].Name == job {
					s.Jobs[i].Running = true
				}
			}
		})
		srv.Update(func(s *Status) {
			s.State = "idle"
			for i := range s.Jobs {
				if s.Jobs[i].Name == job {
					s.Jobs[i].Running = false
					s.Jobs[i].LastOutcome = "success"
					s.Jobs[i].LastSummary = "ran " + id
					s.Jobs[i].LastRun = time.Unix(1800000000, 0)
				}
			}
		})
		_ = srv.EmitJobFinished(job, id, "success", "ran "+id)
	}()
	return id, nil
}

func (b *testBackend) Pull(_ context.Context, ref string) (string, error) {
	b.record("Pull " + ref)
	if ref == "" || strings.HasPrefix(ref, "-") {
		return "", fmt.Errorf("%w: %q", ErrInvalidArgs, ref)
	}
	return "run-pull", nil
}

func (b *testBackend) RecentRuns(_ context.Context, since time.Time) ([]RunRef, error) {
	b.record(fmt.Sprintf("RecentRuns %d", since.UnixMicro()))
	return []RunRef{{ID: "run-1", Job: "prune", Finished: time.UnixMicro(1700000000000001)}}, nil
}

func (b *testBackend) GetReport(_ context.Context, runID string) (string, error) {
	b.record("GetReport " + runID)
	if runID != "run-1" {
		return "", fmt.Errorf("%w: %s", ErrUnknownRun, runID)
	}
	return `{"job":"prune"}`, nil
}

func (b *testBackend) Reload(context.Context) error {
	b.record("Reload")
	return errors.New("policy.toml:3:1: bad key")
}

func (b *testBackend) Pin(_ context.Context, ref string) error {
	b.record("Pin " + ref)
	return nil
}

func (b *testBackend) Unpin(_ context.Context, ref string) error {
	b.record("Unpin " + ref)
	return nil
}

var _ Backend = (*testBackend)(nil)

func startServer(t *testing.T, bus *testenv.DBus, auth bool) (*Server, *testBackend) {
	t.Helper()
	conn, err := ConnectAddress(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	be := &testBackend{}
	be.mu.Lock()
	defer be.mu.Unlock()
	srv, err := Export(Options{
		Conn: conn, Backend: be, RequireAuth: auth, CallTimeout: 10 * time.Second,
		Status: Status{Version: "1.2.3", Mode: "user", State: "idle", PolicyPath: "/etc/stowage/policy.toml",
			StorageUsedBytes: 1000, StorageLimitBytes: 5000, Jobs: testJobs},
	})
	if err != nil {
		t.Fatal(err)
	}
	be.srv = srv
	return srv, be
}

func clientConn(t *testing.T, bus *testenv.DBus) *dbus.Conn {
	t.Helper()
	c, err := ConnectAddress(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// signals subscribes c to everything our object emits.
func signals(t *testing.T, c *dbus.Conn) <-chan *dbus.Signal {
	t.Helper()
	if err := c.AddMatchSignal(dbus.WithMatchObjectPath(ObjectPath)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 64)
	c.Signal(ch)
	return ch
}

func nextSignal(t *testing.T, ch <-chan *dbus.Signal) *dbus.Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no signal within 10s")
		return nil
	}
}

func TestConnectWithoutBus(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/stwg-bus/socket")
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/stwg-bus/socket")
	for _, system := range []bool{false, true} {
		c, err := Connect(system)
		if err == nil {
			c.Close()
			t.Fatalf("Connect(%v) succeeded without a bus", system)
		}
		if !errors.Is(err, ErrNoBus) {
			t.Errorf("Connect(%v) error %v does not wrap ErrNoBus", system, err)
		}
	}
}

func TestSessionBus(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv, be := startServer(t, bus, false)

	// The name is taken: a second daemon on the same bus must not steal it.
	other := clientConn(t, bus)
	if _, err := Export(Options{Conn: other, Backend: be}); !errors.Is(err, ErrNameNotAcquired) {
		t.Fatalf("second Export: %v, want ErrNameNotAcquired", err)
	}

	t.Run("introspect", func(t *testing.T) {
		out := bus.Busctl(t, "--xml-interface", "introspect", BusName, string(ObjectPath))
		var node introspect.Node
		if err := xml.Unmarshal([]byte(out), &node); err != nil {
			t.Fatalf("introspection XML: %v\n%s", err, out)
		}
		var iface *introspect.Interface
		var names []string
		for i := range node.Interfaces {
			names = append(names, node.Interfaces[i].Name)
			if node.Interfaces[i].Name == Interface {
				iface = &node.Interfaces[i]
			}
		}
		for _, want := range []string{"org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Properties",
			"org.freedesktop.DBus.Peer", Interface} {
			if !slices.Contains(names, want) {
				t.Errorf("interface %s not introspected (got %v)", want, names)
			}
		}
		if iface == nil {
			t.Fatal("no manager interface")
		}
		sig := func(args []introspect.Arg, dir string) string {
			var b strings.Builder
			for _, a := range args {
				if a.Direction == dir || (dir == "" && a.Direction != "in") {
					b.WriteString(a.Type)
				}
			}
			return b.String()
		}
		methods := map[string]string{}
		for _, m := range iface.Methods {
			methods[m.Name] = sig(m.Args, "in") + "→" + sig(m.Args, "out")
		}
		wantMethods := map[string]string{
			"ListJobs": "→a(sstsstb)", "RunJob": "sb→s", "PullImage": "s→s", "RecentRuns": "t→a(sst)", "GetReport": "s→s",
			"Reload": "→", "Pin": "s→", "Unpin": "s→",
		}
		for m, s := range wantMethods {
			if methods[m] != s {
				t.Errorf("method %s signature %q, want %q", m, methods[m], s)
			}
		}
		props := map[string]string{}
		for _, p := range iface.Properties {
			if p.Access != "read" {
				t.Errorf("property %s access %q, want read", p.Name, p.Access)
			}
			props[p.Name] = p.Type
			wantEmit := "true"
			if p.Name == "Version" {
				wantEmit = "const"
			}
			if len(p.Annotations) != 1 || p.Annotations[0].Name != "org.freedesktop.DBus.Property.EmitsChangedSignal" ||
				p.Annotations[0].Value != wantEmit {
				t.Errorf("property %s annotations %+v, want EmitsChangedSignal=%s", p.Name, p.Annotations, wantEmit)
			}
		}
		wantProps := map[string]string{
			"Version": "s", "Mode": "s", "State": "s", "PolicyPath": "s", "PolicyError": "s",
			"StorageUsedBytes": "t", "StorageLimitBytes": "t", "Jobs": "a(sstsstb)",
		}
		for p, ty := range wantProps {
			if props[p] != ty {
				t.Errorf("property %s type %q, want %q", p, props[p], ty)
			}
		}
		sigs := map[string]string{}
		for _, s := range iface.Signals {
			sigs[s.Name] = sig(s.Args, "")
		}
		wantSigs := map[string]string{
			"JobStarted": "ssb", "JobFinished": "ssss", "DriftDetected": "sssss",
			"SignatureRejected": "ssss", "QuotaExceeded": "sts", "NewerVersion": "sssss",
		}
		for s, ty := range wantSigs {
			if sigs[s] != ty {
				t.Errorf("signal %s signature %q, want %q", s, sigs[s], ty)
			}
		}
	})

	t.Run("properties", func(t *testing.T) {
		for prop, want := range map[string]string{
			"Version":           `s "1.2.3"`,
			"Mode":              `s "user"`,
			"StorageUsedBytes":  "t 1000",
			"StorageLimitBytes": "t 5000",
			"PolicyError":       `s ""`,
			"Jobs": `a(sstsstb) 2 "prune" "@daily" 1700000000000000 "success" "freed 1 MB" 1700086400000000 false ` +
				`"refresh" "0 3 * * *" 0 "" "" 0 false`,
		} {
			got := strings.TrimSpace(bus.Busctl(t, "get-property", BusName, string(ObjectPath), Interface, prop))
			if got != want {
				t.Errorf("property %s = %s, want %s", prop, got, want)
			}
		}
		// Read-only: a Set is refused.
		if _, err := testenv.RunErr(nil, "busctl", "--address="+bus.Address, "set-property",
			BusName, string(ObjectPath), Interface, "State", "s", "hacked"); err == nil {
			t.Error("set-property State succeeded on a read-only property")
		}
	})

	t.Run("RunJob signals and PropertiesChanged", func(t *testing.T) {
		c := clientConn(t, bus)
		ch := signals(t, c)
		out := strings.TrimSpace(bus.Busctl(t, "call", BusName, string(ObjectPath), Interface, "RunJob", "sb", "prune", "true"))
		if out != `s "run-1"` {
			t.Fatalf("RunJob returned %s", out)
		}
		s := nextSignal(t, ch)
		if s.Name != Interface+".JobStarted" || !slices.Equal(s.Body, []any{"prune", "run-1", true}) {
			t.Fatalf("first signal %s %v, want JobStarted(prune, run-1, true)", s.Name, s.Body)
		}
		// Two updates, one signal each: State and Jobs change; Version etc. never.
		var changed []string
		var lastJobs []JobEntry
		for range 2 {
			s := nextSignal(t, ch)
			if s.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" {
				t.Fatalf("signal %s, want PropertiesChanged", s.Name)
			}
			if s.Body[0] != Interface {
				t.Fatalf("PropertiesChanged for %v", s.Body[0])
			}
			for k, v := range s.Body[1].(map[string]dbus.Variant) {
				changed = append(changed, k)
				if k == "Jobs" {
					if err := v.Store(&lastJobs); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		slices.Sort(changed)
		if !slices.Equal(changed, []string{"Jobs", "Jobs", "State", "State"}) { // one signal per Update
			t.Errorf("changed properties %v", changed)
		}
		if len(lastJobs) != 2 || lastJobs[0].LastSummary != "ran run-1" || lastJobs[0].Running ||
			lastJobs[0].LastRunUsec != 1800000000000000 {
			t.Errorf("Jobs after the run = %+v", lastJobs)
		}
		s = nextSignal(t, ch)
		if s.Name != Interface+".JobFinished" || !slices.Equal(s.Body, []any{"prune", "run-1", "success", "ran run-1"}) {
			t.Fatalf("signal %s %v, want JobFinished", s.Name, s.Body)
		}

		// An Update that changes nothing emits nothing: the next
		// PropertiesChanged carries only the one real change.
		srv.Update(func(*Status) {})
		srv.Update(func(s *Status) { s.StorageUsedBytes = 2000 })
		s = nextSignal(t, ch)
		body := s.Body[1].(map[string]dbus.Variant)
		if len(body) != 1 || body["StorageUsedBytes"].Value() != uint64(2000) {
			t.Errorf("PropertiesChanged after a no-op update: %v", body)
		}

		// Events: drift, signature and quota have signals; others none.
		_ = srv.EmitEvent("run-9", report.Event{Kind: report.EventImageRemoved, Image: "x"})
		_ = srv.EmitEvent("run-9", report.Event{Kind: report.EventDriftDetected, Image: "img", Reference: "r:1",
			Digest: "sha256:ab", Message: "newer"})
		_ = srv.EmitEvent("run-9", report.Event{Kind: report.EventQuotaExceeded, Bytes: 77, Message: "full"})
		_ = srv.EmitEvent("run-9", report.Event{Kind: report.EventSignatureRejected, Image: "img", Reference: "r:2", Message: "unsigned"})
		_ = srv.EmitEvent("run-9", report.Event{Kind: report.EventNewerVersion, Image: "img", Reference: "r:1.2",
			Newer: "r:1.4", Message: "newer version"})
		for _, want := range []struct {
			name string
			body []any
		}{
			{"DriftDetected", []any{"run-9", "img", "r:1", "sha256:ab", "newer"}},
			{"QuotaExceeded", []any{"run-9", uint64(77), "full"}},
			{"SignatureRejected", []any{"run-9", "img", "r:2", "unsigned"}},
			{"NewerVersion", []any{"run-9", "img", "r:1.2", "r:1.4", "newer version"}},
		} {
			s := nextSignal(t, ch)
			if s.Name != Interface+"."+want.name || !slices.Equal(s.Body, want.body) {
				t.Errorf("signal %s %v, want %s %v", s.Name, s.Body, want.name, want.body)
			}
		}
	})

	t.Run("methods and errors", func(t *testing.T) {
		c := clientConn(t, bus)
		obj := c.Object(BusName, ObjectPath)
		var jobs []JobEntry
		if err := obj.Call(Interface+".ListJobs", 0).Store(&jobs); err != nil {
			t.Fatal(err)
		}
		if len(jobs) != 2 || jobs[0] != testJobs[0].Entry() || jobs[1].Name != "refresh" || jobs[1].LastRunUsec != 0 {
			t.Errorf("ListJobs = %+v", jobs)
		}
		var js string
		if err := obj.Call(Interface+".GetReport", 0, "run-1").Store(&js); err != nil || js != `{"job":"prune"}` {
			t.Errorf("GetReport(run-1) = %q, %v", js, err)
		}
		for _, tc := range []struct {
			method  string
			args    []any
			errName string
		}{
			{"GetReport", []any{"run-404"}, ErrorUnknownRun},
			{"RunJob", []any{"bogus", false}, ErrorUnknownJob},
			{"PullImage", []any{"--all"}, ErrorInvalidArgs},
			{"Reload", nil, ErrorFailed},
		} {
			err := obj.Call(Interface+"."+tc.method, 0, tc.args...).Err
			var derr dbus.Error
			if !errors.As(err, &derr) || derr.Name != tc.errName {
				t.Errorf("%s: error %v, want %s", tc.method, err, tc.errName)
			}
		}
		var recent []RunRefEntry
		if err := obj.Call(Interface+".RecentRuns", 0, uint64(1700000000000000)).Store(&recent); err != nil ||
			len(recent) != 1 || recent[0] != (RunRefEntry{"run-1", "prune", 1700000000000001}) {
			t.Errorf("RecentRuns = %+v, %v", recent, err)
		}
		if err := obj.Call(Interface+".PullImage", 0, "localhost/app:1").Store(&js); err != nil || js != "run-pull" {
			t.Errorf("PullImage = %q, %v", js, err)
		}
		if err := obj.Call(Interface+".Pin", 0, "localhost/keep:1").Err; err != nil {
			t.Errorf("Pin: %v", err)
		}
		if err := obj.Call(Interface+".Unpin", 0, "localhost/keep:1").Err; err != nil {
			t.Errorf("Unpin: %v", err)
		}
		calls := be.Calls()
		for _, want := range []string{"GetReport run-404", "RunJob bogus false", "RecentRuns 1700000000000000", "Pull --all", "Pull localhost/app:1", "Reload", "Pin localhost/keep:1", "Unpin localhost/keep:1"} {
			if !slices.Contains(calls, want) {
				t.Errorf("backend did not see %q (calls %v)", want, calls)
			}
		}
	})

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close the name is free again for another daemon.
	srv2, err := Export(Options{Conn: other, Backend: be})
	if err != nil {
		t.Fatalf("Export after Close: %v", err)
	}
	_ = srv2.Close()
}

func TestSystemBusAuthorization(t *testing.T) {
	testenv.RequireRoot(t)
	bus := testenv.StartDBus(t, "system")
	_, be := startServer(t, bus, true)
	const nobody = 65534
	call := func(uid uint32, method, sig string, args ...string) error {
		a := append([]string{"call", BusName, string(ObjectPath), Interface, method}, sig)
		if sig == "" {
			a = a[:len(a)-1]
		}
		_, err := bus.BusctlAs(uid, uid, append(a, args...)...)
		return err
	}

	// Without polkit on the bus a non-root caller is refused (fail closed)
	// before the backend sees the call; read-only methods stay open.
	// dbus-send shows the error name and our message (busctl only "Access denied").
	testenv.RequireTool(t, "dbus-send")
	for _, m := range [][]string{{"RunJob", "string:prune", "boolean:false"}, {"PullImage", "string:localhost/app:1"}, {"Reload"}, {"Pin", "string:a:1"}, {"Unpin", "string:a:1"}} {
		_, err := testenv.RunAs(nobody, nobody, "dbus-send", append([]string{"--bus=" + bus.Address, "--print-reply",
			"--dest=" + BusName, string(ObjectPath), Interface + "." + m[0]}, m[1:]...)...)
		want := ErrorAccessDenied + ": " + m[0] + " requires root or the polkit action " + PolkitAction
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s as nobody without polkit: %v, want %q", m[0], err, want)
		}
	}
	for _, c := range be.Calls() {
		t.Errorf("backend called by a refused caller: %s", c)
	}
	if err := call(nobody, "ListJobs", ""); err != nil {
		t.Errorf("ListJobs as nobody: %v", err)
	}
	// Root is allowed without polkit.
	if err := call(0, "RunJob", "sb", "prune", "true"); err != nil {
		t.Errorf("RunJob as root: %v", err)
	}

	calls := be.Calls()
	if !slices.Equal(calls, []string{"ListJobs", "RunJob prune true"}) {
		t.Errorf("backend calls %v", calls)
	}
}

// The shipped bus policy file, on a bus with the system.conf defaults: root
// may own the name, others may not; anyone may reach the object, and the
// daemon (not the bus) refuses a non-root RunJob.
func TestSystemBusPolicyFile(t *testing.T) {
	testenv.RequireRoot(t)
	bus := testenv.StartSystemDBus(t, shippedBusPolicy)
	const nobody = 65534

	// nobody cannot take the name.
	if _, err := testenv.RunAs(nobody, nobody, "dbus-send", "--bus="+bus.Address, "--print-reply",
		"--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName",
		"string:"+BusName, "uint32:4"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("nobody owning %s: %v, want AccessDenied", BusName, err)
	}
	_, be := startServer(t, bus, true) // root owns it

	if _, err := bus.BusctlAs(nobody, nobody, "get-property", BusName, string(ObjectPath), Interface, "Version"); err != nil {
		t.Errorf("nobody reading Version: %v", err)
	}
	if _, err := bus.BusctlAs(nobody, nobody, "introspect", BusName, string(ObjectPath)); err != nil {
		t.Errorf("nobody introspecting: %v", err)
	}
	if _, err := bus.BusctlAs(nobody, nobody, "call", BusName, string(ObjectPath), Interface, "ListJobs"); err != nil {
		t.Errorf("nobody ListJobs: %v", err)
	}
	_, err := testenv.RunAs(nobody, nobody, "dbus-send", "--bus="+bus.Address, "--print-reply",
		"--dest="+BusName, string(ObjectPath), Interface+".RunJob", "string:prune", "boolean:false")
	if err == nil || !strings.Contains(err.Error(), "requires root") {
		t.Errorf("nobody RunJob: %v, want the daemon's refusal", err)
	}
	// Other interfaces on the name stay closed by the bus.
	if _, err := testenv.RunAs(nobody, nobody, "dbus-send", "--bus="+bus.Address, "--print-reply",
		"--dest="+BusName, string(ObjectPath), "org.example.Other.Do"); err == nil ||
		!strings.Contains(err.Error(), "AccessDenied") || strings.Contains(err.Error(), "requires root") {
		t.Errorf("nobody calling another interface: %v, want the bus's AccessDenied", err)
	}
	if _, err := bus.BusctlAs(0, 0, "call", BusName, string(ObjectPath), Interface, "RunJob", "sb", "refresh", "false"); err != nil {
		t.Errorf("root RunJob: %v", err)
	}
	if calls := be.Calls(); !slices.Equal(calls, []string{"ListJobs", "RunJob refresh false"}) {
		t.Errorf("backend calls %v", calls)
	}
}

// With the real polkitd (our action file, a rule granting the action to
// nobody): nobody may RunJob, uid 1 (daemon) may not; once polkitd is gone,
// nobody is refused again (fail closed).
func TestSystemBusRealPolkit(t *testing.T) {
	testenv.RequireRoot(t)
	bus := testenv.StartSystemDBus(t, shippedBusPolicy, testenv.PolkitBusPolicy)
	pk := testenv.StartPolkit(t, bus, []string{shippedPolkitAction}, `
polkit.addRule(function(action, subject) {
    if (action.id == "io.github.stowage.manage" && subject.user == "nobody") {
        return polkit.Result.YES;
    }
});
`)
	_, be := startServer(t, bus, true)
	const nobody, daemonUID = 65534, 1
	runJob := func(uid uint32, job string) error {
		_, err := testenv.RunAs(uid, uid, "dbus-send", "--bus="+bus.Address, "--print-reply",
			"--dest="+BusName, string(ObjectPath), Interface+".RunJob", "string:"+job, "boolean:true")
		return err
	}
	if err := runJob(nobody, "prune"); err != nil {
		t.Errorf("nobody RunJob with a polkit grant: %v\npolkitd:\n%s", err, pk.Log())
	}
	if err := runJob(daemonUID, "refresh"); err == nil || !strings.Contains(err.Error(), "requires root") {
		t.Errorf("uid 1 RunJob without a grant: %v, want refusal", err)
	}
	pull := func(uid uint32) error {
		_, err := testenv.RunAs(uid, uid, "dbus-send", "--bus="+bus.Address, "--print-reply",
			"--dest="+BusName, string(ObjectPath), Interface+".PullImage", "string:localhost/app:1")
		return err
	}
	if err := pull(nobody); err != nil {
		t.Errorf("nobody PullImage with a polkit grant: %v\npolkitd:\n%s", err, pk.Log())
	}
	if err := pull(daemonUID); err == nil || !strings.Contains(err.Error(), ErrorAccessDenied) {
		t.Errorf("uid 1 PullImage without a grant: %v, want AccessDenied", err)
	}
	pk.Stop()
	if err := runJob(nobody, "refresh"); err == nil || !strings.Contains(err.Error(), "requires root") {
		t.Errorf("nobody RunJob without polkitd: %v, want refusal", err)
	}
	if calls := be.Calls(); !slices.Equal(calls, []string{"RunJob prune true", "Pull localhost/app:1"}) {
		t.Errorf("backend calls %v", calls)
	}
}

// A daemon whose bus went away keeps running: updates and signals fail
// softly.
func TestBusGone(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv, _ := startServer(t, bus, false)
	srv.conn.Close()
	srv.Update(func(s *Status) { s.State = "running" })
	if got := srv.Status().State; got != "running" {
		t.Errorf("State = %q after update", got)
	}
	if err := srv.EmitJobStarted("prune", "r", false); err == nil {
		t.Error("EmitJobStarted on a closed connection returned nil")
	}
}

// Method calls run concurrently (one goroutine each in godbus) while the
// daemon updates properties: run under -race to check the locking.
func TestConcurrentCalls(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv, _ := startServer(t, bus, false)
	c := clientConn(t, bus)
	obj := c.Object(BusName, ObjectPath)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 20 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var jobs []JobEntry
			if err := obj.Call(Interface+".ListJobs", 0).Store(&jobs); err != nil {
				errs <- err
			}
			v, err := obj.GetProperty(Interface + ".StorageUsedBytes")
			if err != nil {
				errs <- err
			} else if _, ok := v.Value().(uint64); !ok {
				errs <- fmt.Errorf("StorageUsedBytes is %T", v.Value())
			}
		}()
		go func() {
			defer wg.Done()
			srv.Update(func(s *Status) { s.StorageUsedBytes = uint64(i) })
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := obj.Call("org.freedesktop.DBus.Peer.Ping", 0).Err; err != nil {
		t.Errorf("Peer.Ping: %v", err)
	}
}

// The files packaging installs (units/), tested here against the daemon's code.
const (
	shippedBusPolicy    = "../../units/dbus/io.github.stowage.Stowage1.conf"
	shippedPolkitAction = "../../units/polkit/io.github.stowage.policy"
)
