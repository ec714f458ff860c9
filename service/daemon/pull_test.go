package daemon

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/test/testenv"
)

// TestPullImage: PullImage over D-Bus starts a refresh worker with
// --pull=REF (the reference normalized), and refuses what is not a
// reference before any worker starts.
func TestPullImage(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	// The worker reports its own argument list as its summary.
	script := `printf '{"job":"%s","summary":"args %s","events":[],"metrics":{}}\n' "$2" "$*"`
	h := start(t, shWorker(script), basePolicy, func(o *Options) { o.NoBus, o.BusAddress = false, bus.Address })
	ctx := t.Context()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	obj := conn.Object(dbusapi.BusName, dbusapi.ObjectPath)

	var id string
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".PullImage", 0, "alpine:3").Store(&id); err != nil {
		t.Fatalf("PullImage: %v", err)
	}
	r, err := h.c.Wait(ctx, id)
	if err != nil || r.Outcome != api.OutcomeSucceeded || r.Job != "refresh" || r.DryRun {
		t.Fatalf("pull run: %+v %v", r, err)
	}
	if args := strings.Fields(r.Summary); !slices.Contains(args, "refresh") || !slices.Contains(args, "--pull=docker.io/library/alpine:3") {
		t.Fatalf("worker arguments %q, want run refresh ... --pull=docker.io/library/alpine:3", r.Summary)
	}

	// A plain refresh afterwards has no --pull.
	r, err = h.c.Trigger(ctx, "refresh", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = h.c.Wait(ctx, r.ID); err != nil || strings.Contains(r.Summary, "--pull") {
		t.Fatalf("plain refresh: %+v %v", r, err)
	}

	for _, bad := range []string{"", "--all", "NOT A REF!"} {
		err := obj.CallWithContext(ctx, dbusapi.Interface+".PullImage", 0, bad).Err
		var derr dbus.Error
		if !errors.As(err, &derr) || derr.Name != dbusapi.ErrorInvalidArgs {
			t.Errorf("PullImage(%q): %v, want %s", bad, err, dbusapi.ErrorInvalidArgs)
		}
	}
	hist, err := h.c.History(ctx, "refresh", 10)
	if err != nil || len(hist) != 2 {
		t.Fatalf("refresh history after refused pulls: %d runs, %v", len(hist), err)
	}
}

// TestNotifyTopics: in user mode [notify] topics leaves out the findings
// of other topics; a finding of a listed family is shown.
func TestNotifyTopics(t *testing.T) {
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
	if _, err := srvConn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	script := `printf '{"job":"%s","summary":"s","events":[` +
		`{"kind":"drift_detected","severity":"normal","topic":"refresh:localhost/a:1","reference":"localhost/a:1","message":"a drifted"},` +
		`{"kind":"signature_rejected","severity":"critical","topic":"verify:localhost/b:1","reference":"localhost/b:1","message":"b rejected"}]}' "$2"`
	h := start(t, shWorker(script), basePolicy+"[notify]\ndesktop = true\ntopics = [\"verify\"]\n",
		func(o *Options) { o.NoBus, o.BusAddress = false, bus.Address })
	ctx := t.Context()
	r, err := h.c.Trigger(ctx, "verify", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Wait(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-ns.calls:
		if body := c[3].(string); body != "b rejected" {
			t.Fatalf("notification body %q, want the verify finding only", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
}

// TestRecentRuns: RecentRuns lists finished runs after a time, oldest
// first, without dry runs.
func TestRecentRuns(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) { o.NoBus, o.BusAddress = false, bus.Address })
	ctx := t.Context()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	obj := conn.Object(dbusapi.BusName, dbusapi.ObjectPath)
	var ids []string
	for _, tc := range []struct {
		job string
		dry bool
	}{{"prune", false}, {"verify", true}, {"refresh", false}} {
		r, err := h.c.Trigger(ctx, tc.job, tc.dry)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = h.c.Wait(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if !tc.dry {
			ids = append(ids, r.ID)
		}
	}
	var got []dbusapi.RunRefEntry
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".RecentRuns", 0, uint64(0)).Store(&got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != ids[0] || got[0].Job != "prune" || got[1].ID != ids[1] || got[0].FinishedUsec > got[1].FinishedUsec {
		t.Fatalf("RecentRuns(0) = %+v, want %v", got, ids)
	}
	if err := obj.CallWithContext(ctx, dbusapi.Interface+".RecentRuns", 0, got[0].FinishedUsec).Store(&got); err != nil || len(got) != 1 || got[0].ID != ids[1] {
		t.Fatalf("RecentRuns(after the first) = %+v, %v", got, err)
	}
}
