package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/hoststate"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/test/testenv"
)

// deferScript is a refresh worker that, when told to defer pulls, says it
// started, waits for the test's go and reports one pull left out; told
// nothing, it reports one pull made. It records its arguments.
const deferScript = `dir=%q
echo "$*" >> "$dir/args"
case "$*" in
*--defer-pulls*)
  touch "$dir/started"
  while [ ! -e "$dir/go" ]; do sleep 0.02; done
  printf '{"job":"%s","dry_run":false,"summary":"deferred","events":[],"metrics":{"pulls_deferred":1}}\n' "$2" ;;
*)
  printf '{"job":"%s","dry_run":false,"summary":"pulled","events":[],"metrics":{"pulled":1,"pulls_deferred":0}}\n' "$2" ;;
esac`

// TestDeferredWorkCaughtUpAfterBusyRun: the connection becomes unmetered
// while the run that deferred its pulls is still going. The daemon owes
// the pulls only once that run has reported leaving them out, and its job
// is busy until then: the catch-up is retried and runs, without the
// deferral, right after. NetworkManager is a stand-in peer on a real
// dbus-daemon (this machine has no metered connection); the worker is a
// script, as the daemon's other unit tests use.
func TestDeferredWorkCaughtUpAfterBusyRun(t *testing.T) {
	bus := testenv.StartDBus(t, "system")
	nm := testenv.StartNetworkManager(t, bus.Address, 1)
	w, err := hoststate.Open(bus.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })

	dir := t.TempDir()
	pol := "version = 1\n[schedule]\njitter = \"0\"\n[refresh]\nmode = \"pull\"\n"
	h := start(t, shWorker(strings.Replace(deferScript, "%q", "'"+dir+"'", 1)), pol, func(o *Options) { o.HostState = w })

	first, err := h.c.Trigger(t.Context(), "refresh", false)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deferred run to start", func() bool { _, err := os.Stat(filepath.Join(dir, "started")); return err == nil })
	nm.Set(uint32(2)) // unmetered while the deferred run goes on
	waitFor(t, "the daemon to see the change", func() bool { return !w.State().Metered })
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	var hist []*api.Run
	waitFor(t, "the catch-up run", func() bool {
		hist, err = h.c.History(t.Context(), "refresh", 10)
		return err == nil && len(hist) == 2
	})
	if hist[1].ID != first.ID || hist[1].Summary != "deferred" || hist[0].Summary != "pulled" || hist[0].Trigger != api.TriggerManual {
		t.Fatalf("runs (newest first): %+v, %+v", hist[0], hist[1])
	}
	args, err := os.ReadFile(filepath.Join(dir, "args"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(args)), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "--defer-pulls metered connection") || strings.Contains(lines[1], "--defer") {
		t.Fatalf("worker arguments:\n%s", args)
	}
	// Owed work is settled: no third run.
	h.d.mu.Lock()
	owed := len(h.d.owed)
	h.d.mu.Unlock()
	if owed != 0 {
		t.Fatalf("still owed after the catch-up: %v", h.d.owed)
	}
	if hist, _ = h.c.History(t.Context(), "refresh", 10); len(hist) != 2 || slices.ContainsFunc(hist, func(r *api.Run) bool { return r.Outcome != api.OutcomeSucceeded }) {
		t.Fatalf("history: %+v", hist)
	}
}

// TestDeferredWorkOwedAcrossRestart: a daemon that exited idle while the
// last refresh had left its pulls out (its recorded report says so) starts
// again; while still metered it owes them and runs nothing, and once
// started unmetered it catches them up at once.
func TestDeferredWorkOwedAcrossRestart(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := runs.New(db, 0)
	at := time.Now().Add(-time.Minute)
	prev := &api.Run{
		ID: runs.NewID("refresh", at), Job: "refresh", Trigger: api.TriggerSchedule, Queued: at, Started: at, Finished: at.Add(time.Second),
		Outcome: api.OutcomeSucceeded, Summary: "deferred",
		Report: json.RawMessage(`{"job":"refresh","summary":"deferred","events":[],"metrics":{"pulls_deferred":1}}`),
	}
	if err := store.Put(prev); err != nil {
		t.Fatal(err)
	}
	bus := testenv.StartDBus(t, "system")
	nm := testenv.StartNetworkManager(t, bus.Address, 3) // guess-yes
	w, err := hoststate.Open(bus.Address, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// No scheduled slot since the last run: any run is the deferral's.
	pol := "version = 1\n[schedule]\nrefresh = \"0 0 1 1 *\"\njitter = \"0\"\n[refresh]\nmode = \"pull\"\n"
	mod := func(o *Options) { o.State, o.Runs, o.HostState = db, store, w }
	sp := shWorker(strings.Replace(deferScript, "%q", "'"+dir+"'", 1))

	h := start(t, sp, pol, mod)
	time.Sleep(500 * time.Millisecond)
	if l, err := h.c.Latest(t.Context(), "refresh"); err != nil || l.ID != prev.ID {
		t.Fatalf("a run started while still metered: %+v %v", l, err)
	}
	h.stop(t)

	nm.Set(uint32(4)) // guess-no
	waitFor(t, "unmetered", func() bool { return !w.State().Metered })
	h = start(t, sp, pol, mod)
	waitFor(t, "the catch-up at start", func() bool {
		l, err := h.c.Latest(t.Context(), "refresh")
		return err == nil && l.ID != prev.ID && l.Outcome.Done()
	})
	if l, _ := h.c.Latest(t.Context(), "refresh"); l.Summary != "pulled" || l.Outcome != api.OutcomeSucceeded {
		t.Fatalf("catch-up run: %+v", l)
	}
}
