package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/pins"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/test/testenv"
)

// TestDBusWiring: on a private session bus the daemon owns its name before
// it answers, RunJob starts a real worker run, JobFinished carries its
// outcome, and properties follow reloads.
func TestDBusWiring(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) { o.NoBus, o.BusAddress = false, bus.Address })
	ctx := t.Context()
	st, err := h.c.Status(ctx)
	if err != nil || !strings.Contains(st.Bus, dbusapi.BusName) {
		t.Fatalf("status bus = %q, %v", st.Bus, err)
	}

	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(dbusapi.Interface), dbus.WithMatchMember("JobFinished")); err != nil {
		t.Fatal(err)
	}
	sigs := make(chan *dbus.Signal, 16)
	conn.Signal(sigs)
	obj := conn.Object(dbusapi.BusName, dbusapi.ObjectPath)

	var id string
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".RunJob", 0, "verify", false).Store(&id); err != nil {
		t.Fatalf("RunJob: %v", err)
	}
	deadline := time.After(20 * time.Second)
	for done := false; !done; {
		select {
		case s := <-sigs:
			if len(s.Body) == 4 && s.Body[1] == id {
				if s.Body[0] != "verify" || s.Body[2] != string(api.OutcomeSucceeded) || s.Body[3] != "ok verify" {
					t.Fatalf("JobFinished %v", s.Body)
				}
				done = true
			}
		case <-deadline:
			t.Fatal("no JobFinished signal")
		}
	}
	var js string
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".GetReport", 0, id).Store(&js); err != nil {
		t.Fatalf("GetReport: %v", err)
	}
	var r api.Run
	if err := json.Unmarshal([]byte(js), &r); err != nil || r.ID != id || !strings.Contains(string(r.Report), `"freed_bytes":42`) {
		t.Fatalf("GetReport = %s (%v)", js, err)
	}
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".RunJob", 0, "nope", false).Err; err == nil || !strings.Contains(err.Error(), "unknown job") {
		t.Fatalf("RunJob(nope): %v", err)
	}

	// Pin writes the pin the prune job honours.
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".Pin", 0, "localhost/stwg-daemon/keep:1").Err; err != nil {
		t.Fatalf("Pin: %v", err)
	}
	ps, err := pins.List(h.d.opts.State)
	if err != nil || len(ps) != 1 || ps[0].Ref != "localhost/stwg-daemon/keep:1" {
		t.Fatalf("pins after Pin: %v %v", ps, err)
	}
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".Pin", 0, "NOT A REF!").Err; err == nil {
		t.Fatal("Pin of an invalid reference succeeded")
	}

	// A bad reload over D-Bus fails and shows in PolicyError.
	writePolicy(t, h.policy, "version = 1\nnonsense = true\n")
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".Reload", 0).Err; err == nil {
		t.Fatal("Reload of an invalid policy succeeded")
	}
	v, err := obj.GetProperty(dbusapi.Interface + ".PolicyError")
	if err != nil || !strings.Contains(v.Value().(string), "nonsense") {
		t.Fatalf("PolicyError = %v, %v", v, err)
	}
}

// notifyServer records Notify calls, as a desktop's notification daemon.
type notifyServer struct {
	calls chan []any
	next  uint32
}

func (s *notifyServer) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	s.next++
	s.calls <- []any{app, replaces, summary, body}
	return s.next, nil
}

// TestDesktopNotificationWiring: in user mode a run's new finding becomes
// one desktop notification; the same finding in the next run does not.
func TestDesktopNotificationWiring(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srvConn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer srvConn.Close()
	ns := &notifyServer{calls: make(chan []any, 8)}
	if err := srvConn.Export(ns, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if reply, err := srvConn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", reply, err)
	}
	script := `printf '{"job":"%s","summary":"1 drifted","events":[{"kind":"drift_detected","severity":"normal","message":"docker.io/library/alpine:3 changed","reference":"docker.io/library/alpine:3","digest":"sha256:aa"}]}' "$2"`
	h := start(t, shWorker(script), basePolicy+"[notify]\ndesktop = true\nmin_urgency = \"normal\"\n",
		func(o *Options) { o.NoBus, o.BusAddress = false, bus.Address })
	ctx := t.Context()
	for i := range 2 {
		// A run is recorded (Wait returns) before the scheduler lets the
		// job go, which is after the notification: retry while busy.
		var r *api.Run
		var err error
		waitFor(t, "refresh free", func() bool {
			r, err = h.c.Trigger(ctx, "refresh", false)
			return err == nil || !strings.Contains(err.Error(), "already running")
		})
		if err != nil {
			t.Fatal(err)
		}
		if r, err = h.c.Wait(ctx, r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
			t.Fatalf("run %d: %+v %v", i, r, err)
		}
	}
	select {
	case c := <-ns.calls:
		if c[0] != "stowage" || !strings.Contains(c[3].(string), "alpine:3 changed") {
			t.Fatalf("Notify%v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	select {
	case c := <-ns.calls:
		t.Fatalf("the same finding was notified twice: %v", c)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestNoSessionBus: with no DBUS_SESSION_BUS_ADDRESS and no
// $XDG_RUNTIME_DIR/bus the daemon runs without D-Bus and says so; it does
// not autolaunch a bus (a dbus-launch first in PATH would record it).
func TestNoSessionBus(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	os.Unsetenv("DBUS_SESSION_BUS_ADDRESS")
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	bin, ran := t.TempDir(), filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte("#!/bin/sh\ntouch "+ran+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) { o.NoBus = false })
	st, err := h.c.Status(t.Context())
	if err != nil || !strings.HasPrefix(st.Bus, "none: ") || !strings.Contains(st.Bus, "no session bus") {
		t.Fatalf("status bus = %q, %v", st.Bus, err)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Fatal("dbus-launch was run")
	}
}
