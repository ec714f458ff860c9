package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/test/testenv"
)

// actionsScript is a worker whose reports carry findings that get actions:
// refresh a drift of one reference (example.org/app:1, or the one in the
// file $STWG_DRIFT_REF; with --pull REF, "pulled REF"),
// prune a quota shortfall, verify findings about two references.
const actionsScript = `ref=; prev=
for a in "$@"; do [ "$prev" = --pull ] && ref=$a; case $a in --pull=*) ref=${a#--pull=};; esac; prev=$a; done
case "$2" in
refresh) if [ -n "$ref" ]; then ev='[]'; sum="pulled $ref"; else
  dref=example.org/app:1; if [ -s "${STWG_DRIFT_REF:-}" ]; then dref=$(cat "$STWG_DRIFT_REF"); fi
  ev=$(printf '[{"kind":"drift_detected","severity":"normal","message":"%s drifted","topic":"refresh:%s","reference":"%s","digest":"sha256:1"}]' "$dref" "$dref" "$dref"); sum=checked; fi;;
prune) ev='[{"kind":"quota_exceeded","severity":"normal","message":"over quota: 2 GB to free","topic":"prune-quota","bytes":2000000000}]'; sum="ok prune";;
*) ev='[{"kind":"signature_rejected","severity":"critical","message":"unsigned a","reference":"example.org/a:1"},{"kind":"signature_rejected","severity":"critical","message":"unsigned b","reference":"example.org/b:1"}]'; sum="ok $2";;
esac
printf '{"job":"%s","dry_run":false,"summary":"%s","events":%s}\n' "$2" "$sum" "$ev"`

// actionServer is a notification server for the test on the private bus:
// it advertises actions and records the actions array of each Notify.
type actionServer struct {
	conn    *dbus.Conn
	mu      sync.Mutex
	next    uint32
	actions map[uint32][]string
}

func (s *actionServer) Notify(_ string, replaces uint32, _, _, _ string, actions []string,
	_ map[string]dbus.Variant, _ int32) (uint32, *dbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := replaces
	if id == 0 {
		s.next++
		id = s.next
	}
	s.actions[id] = actions
	return id, nil
}

func (s *actionServer) GetCapabilities() ([]string, *dbus.Error) {
	return []string{"body", "actions"}, nil
}

// offering returns the id of a notification offering key, 0 if none.
func (s *actionServer) offering(key string) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, a := range s.actions {
		for i := 0; i < len(a); i += 2 {
			if a[i] == key {
				return id
			}
		}
	}
	return 0
}

func startActionServer(t *testing.T, bus *testenv.DBus) *actionServer {
	t.Helper()
	c, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &actionServer{conn: c, actions: map[uint32][]string{}}
	if err := c.Export(s, notify.ServicePath, "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if r, err := c.RequestName(notify.ServiceName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s: %v %v", notify.ServiceName, r, err)
	}
	return s
}

func (s *actionServer) emit(t *testing.T, member string, args ...any) {
	t.Helper()
	if err := s.conn.Emit(notify.ServicePath, "org.freedesktop.Notifications."+member, args...); err != nil {
		t.Fatal(err)
	}
}

// runWith waits for a finished run of job matching ok in the history.
func runWith(t *testing.T, h *harness, job string, ok func(*api.Run) bool) *api.Run {
	t.Helper()
	var found *api.Run
	waitFor(t, "a "+job+" run", func() bool {
		hist, err := h.d.History(job, 20)
		if err != nil {
			return false
		}
		for _, r := range hist {
			if r.Outcome.Done() && ok(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

// TestNotificationActions: the user daemon's notifications offer actions,
// and invoking them through the notification server starts a prune run, a
// refresh --pull run of the one reference, and writes and opens a report.
func TestNotificationActions(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv := startActionServer(t, bus)
	runtime := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	opened := filepath.Join(t.TempDir(), "opened")
	h := start(t, shWorker(actionsScript), basePolicy, func(o *Options) {
		o.NoBus, o.BusAddress = false, bus.Address
		o.ReportOpener = []string{"sh", "-c", `printf %s "$1" > "$0"`, opened}
	})

	// Prune: a quota shortfall offers "Free 2 GB now", which runs prune.
	first, err := h.d.Trigger("prune", false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a notification offering prune", func() bool { return srv.offering("prune") != 0 })
	srv.emit(t, "ActionInvoked", srv.offering("prune"), "prune")
	runWith(t, h, "prune", func(r *api.Run) bool { return r.ID != first.ID && r.Trigger == api.TriggerManual && !r.DryRun })

	// Pull: a drift of one reference offers "Pull update", which runs
	// refresh --pull for that reference alone.
	if _, err := h.d.Trigger("refresh", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a notification offering pull", func() bool { return srv.offering("pull") != 0 })
	srv.emit(t, "ActionInvoked", srv.offering("pull"), "pull")
	pull := runWith(t, h, "refresh", func(r *api.Run) bool { return len(r.Args) > 0 })
	if !slices.Equal(pull.Args, []string{"--pull=example.org/app:1"}) || pull.Summary != "pulled example.org/app:1" ||
		pull.Outcome != api.OutcomeSucceeded {
		t.Fatalf("pull run %+v", pull)
	}

	// Report: findings about two references offer "Show report" only; it
	// writes the run's report where the opener is pointed.
	v, err := h.d.Trigger("verify", false)
	if err != nil {
		t.Fatal(err)
	}
	var id uint32
	waitFor(t, "a notification offering the report only", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for i, a := range srv.actions {
			if slices.Equal(a, []string{"report", "Show report"}) {
				id = i
			}
		}
		return id != 0
	})
	srv.emit(t, "ActionInvoked", id, "report")
	path := filepath.Join(runtime, "stowage", "reports", v.ID+".txt")
	waitFor(t, "the report opened", func() bool { b, _ := os.ReadFile(opened); return string(b) == path })
	data, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(data), "run "+v.ID+": verify succeeded\nok verify\n") {
		t.Fatalf("report file %q, %v", data, err)
	}
}

// TestIdleHoldForActions: with a notification with actions open the idle
// daemon stays up; NotificationClosed lets it exit.
func TestIdleHoldForActions(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv := startActionServer(t, bus)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	h := start(t, shWorker(actionsScript), "version = 1\n[schedule]\nprune = \"@every 1h\"\njitter = \"0\"\n", func(o *Options) {
		o.NoBus, o.BusAddress = false, bus.Address
		o.IdleExit = 300 * time.Millisecond
	})
	if _, err := h.d.Trigger("verify", false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a notification with actions", func() bool { return srv.offering("report") != 0 })
	h.c.Close()
	select {
	case err := <-h.done:
		h.done <- err
		t.Fatalf("exited with a notification with actions open: %v", err)
	case <-time.After(2 * time.Second):
	}
	srv.emit(t, "NotificationClosed", srv.offering("report"), uint32(2))
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit once the notification closed")
	}
}
