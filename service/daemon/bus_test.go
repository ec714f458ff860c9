package daemon

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

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
