package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/runs"
)

// seedBaseline records that the daemon first saw job's schedule at since.
func seedBaseline(t *testing.T, db *state.DB, job, spec string, since time.Time) {
	t.Helper()
	err := db.Update(baselineBucket, func(b *bolt.Bucket) error {
		return state.PutJSON(b, job, seen{Spec: spec, Since: since})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func readBaseline(t *testing.T, db *state.DB, job string) (s seen, ok bool) {
	t.Helper()
	err := db.View(baselineBucket, func(b *bolt.Bucket) error {
		err := state.GetJSON(b, job, &s)
		ok = err == nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, ok
}

// TestNeverRunJobIsCaughtUp: on a fresh install the first start records
// when each schedule was first seen and runs nothing; a later start after a
// slot has passed catches the never-run job up, once — the case that left
// a fresh install with socket + timer + idle exit without any run.
func TestNeverRunJobIsCaughtUp(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := runs.New(db, 0)
	pol := "version = 1\n[schedule]\nprune = \"@hourly\"\nverify = \"@daily\"\nvolumes = \"@weekly\"\nrefresh = \"@daily\"\njitter = \"0\"\n"
	shared := func(o *Options) { o.State, o.Runs = db, store }

	before := time.Now()
	h := start(t, shWorker(reportScript), pol, shared)
	b, ok := readBaseline(t, db, "prune")
	if !ok || b.Spec != "@hourly" || b.Since.Before(before) || b.Since.After(time.Now()) {
		t.Fatalf("baseline after the first start: %+v %v", b, ok)
	}
	time.Sleep(300 * time.Millisecond)
	if h.d.sched.Busy() {
		t.Fatal("a fresh install ran a job at its first start")
	}
	h.stop(t)

	// The daemon was away while prune's first slot passed (seen 61 min ago).
	seedBaseline(t, db, "prune", "@hourly", time.Now().Add(-61*time.Minute))
	h = start(t, shWorker(reportScript), pol, shared)
	waitFor(t, "catch-up of the never-run job", func() bool {
		l, err := h.c.Latest(t.Context(), "prune")
		return err == nil && l.Trigger == api.TriggerCatchUp && l.Outcome == api.OutcomeSucceeded
	})
	for _, job := range []string{"verify", "volumes", "refresh"} {
		if l, err := h.c.Latest(t.Context(), job); err == nil {
			t.Fatalf("%s was not due but ran: %+v", job, l)
		}
	}
	// The baseline survives the run; the run is now the later anchor.
	if b2, _ := readBaseline(t, db, "prune"); b2.Spec != "@hourly" {
		t.Fatalf("baseline after the run: %+v", b2)
	}
	hist, err := store.History("prune", 10)
	if err != nil || len(hist) != 1 {
		t.Fatalf("prune history %d runs (%v), want exactly one catch-up", len(hist), err)
	}
}

// TestCatchUpKeepsIdleDaemonUp: a catch-up delayed by its jitter holds an
// idle-exiting daemon up until it has run; then the daemon exits.
func TestCatchUpKeepsIdleDaemonUp(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := runs.New(db, 0)
	seedBaseline(t, db, "prune", "@hourly", time.Now().Add(-3*time.Hour))
	h := start(t, shWorker(reportScript), "version = 1\n[schedule]\nprune = \"@hourly\"\njitter = \"1500ms\"\n",
		func(o *Options) { o.State, o.Runs, o.IdleExit = db, store, 200*time.Millisecond })
	h.c.Close()
	select {
	case err := <-h.done:
		h.done <- nil
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("daemon did not exit after its catch-up")
	}
	l, err := store.Latest("prune")
	if err != nil || l.Trigger != api.TriggerCatchUp || l.Outcome != api.OutcomeSucceeded {
		t.Fatalf("daemon exited without its catch-up run: %+v %v", l, err)
	}
}

// TestBlockedReloadNeverBlocksShutdown: a SIGHUP reload whose policy read
// hangs does not keep the daemon from stopping.
func TestBlockedReloadNeverBlocksShutdown(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	loading := make(chan struct{}, 1)
	var calls int
	var mu sync.Mutex
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) {
		load := o.LoadPolicy
		o.LoadPolicy = func() (*policy.Snapshot, error) {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n > 1 {
				loading <- struct{}{}
				<-release
				return nil, errors.New("released at the end of the test")
			}
			return load()
		}
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-loading:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not start a reload")
	}
	// Still serving while the reload hangs.
	if _, err := h.c.Status(t.Context()); err != nil {
		t.Fatalf("status during a hung reload: %v", err)
	}
	h.cancel() // SIGTERM
	select {
	case err := <-h.done:
		h.done <- nil
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		h.done <- nil
		t.Fatal("a hung reload blocked shutdown")
	}
}

// listenNotifyIn points NOTIFY_SOCKET at a datagram socket and returns a
// function listing the messages received so far.
func listenNotifyIn(t *testing.T) func() []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	var mu sync.Mutex
	var msgs []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, string(buf[:n]))
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), msgs...)
	}
}

// TestStatusAfterReload: the READY=1 message that ends a reload carries
// the status after it (it used to carry the one from before).
func TestStatusAfterReload(t *testing.T) {
	msgs := listenNotifyIn(t)
	h := start(t, shWorker(reportScript), basePolicy, nil)
	writePolicy(t, h.policy, "version = 1\n[prune\n")
	if res, _ := h.c.Reload(t.Context()); res == nil || res.OK {
		t.Fatalf("reload of a broken policy: %+v", res)
	}
	var last string
	waitFor(t, "READY=1 after RELOADING=1", func() bool {
		m := msgs()
		for i := len(m) - 1; i >= 0; i-- {
			if strings.HasPrefix(m[i], "RELOADING=1") {
				return false
			}
			if strings.HasPrefix(m[i], "READY=1") {
				last = m[i]
				return strings.Contains(strings.Join(m[:i], "|"), "RELOADING=1")
			}
		}
		return false
	})
	if !strings.Contains(last, "STATUS=idle; policy invalid (previous policy in force)") {
		t.Fatalf("status after the refused reload: %q", last)
	}
	writePolicy(t, h.policy, basePolicy)
	if res, err := h.c.Reload(t.Context()); err != nil || !res.OK {
		t.Fatalf("reload: %+v %v", res, err)
	}
	waitFor(t, "STATUS=idle after the good reload", func() bool {
		m := msgs()
		return len(m) > 0 && m[len(m)-1] == "READY=1\nSTATUS=idle"
	})
}

// TestRunEndingBeforeTriggerReturns: a run that starts and ends before
// Trigger has recorded it as queued leaves no stale "queued" run behind, so
// `trigger --wait` ends.
func TestRunEndingBeforeTriggerReturns(t *testing.T) {
	// Give the run every chance to start and end between queueing and
	// recording (it cannot any more: Trigger holds the daemon's lock).
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) {
		o.testAfterQueue = func(id string) {
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := o.Runs.Get(id); err == nil {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	r, err := h.c.Trigger(t.Context(), "prune", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	done, err := h.c.Wait(ctx, r.ID)
	if err != nil || done.Outcome != api.OutcomeSucceeded {
		t.Fatalf("wait: %+v %v", done, err)
	}
	if st, _ := h.c.Status(t.Context()); st.State != "idle" {
		t.Fatalf("status after the run: %+v", st)
	}
}
