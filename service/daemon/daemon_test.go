package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/worker"
	"github.com/stowage/stowage/test/testjobs"
)

// shWorker is a worker "binary": sh -c SCRIPT sh run JOB --format json --log-format json [--dry-run],
// so the script sees the job as $2.
func shWorker(script string) *worker.Spawner {
	return &worker.Spawner{Exe: "/bin/sh", GlobalArgs: []string{"-c", script, "sh"}, Env: os.Environ()}
}

// reportScript prints a minimal report envelope for job $2.
const reportScript = `printf '{"job":"%s","dry_run":false,"summary":"ok %s","events":[],"metrics":{"freed_bytes":42}}\n' "$2" "$2"`

type harness struct {
	d      *Daemon
	c      *client.Client
	policy string
	sock   string
	cancel context.CancelFunc
	done   chan error
}

func writePolicy(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs an in-process daemon with a real policy file, state DB and
// unix socket.
func start(t *testing.T, sp *worker.Spawner, policyBody string, mod func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{policy: filepath.Join(dir, "stowage.toml"), sock: filepath.Join(dir, "run", "stowage.sock")}
	writePolicy(t, h.policy, policyBody)
	db, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Version: "test",
		Jobs:    testjobs.Registry(),
		LoadPolicy: func() (*policy.Snapshot, error) {
			return policy.LoadSnapshot(policy.LoadOptions{Path: h.policy})
		},
		Runs:       runs.New(db, 0),
		Spawner:    sp,
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SocketPath: h.sock,
		State:      db,
		NoBus:      true,
	}
	if mod != nil {
		mod(&o)
	}
	h.d, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.d.Run(ctx) }()
	h.c = client.New(h.sock, nil)
	waitFor(t, "daemon up", func() bool { _, err := h.c.Status(t.Context()); return err == nil })
	t.Cleanup(func() {
		h.c.Close()
		h.stop(t)
	})
	return h
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("daemon: %v", err)
		}
		h.done <- nil
	case <-time.After(30 * time.Second):
		t.Error("daemon did not stop")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
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

const basePolicy = "version = 1\n[schedule]\nprune = \"@hourly\"\njitter = \"0\"\n"

func TestReloadInvalidKeepsOldPolicy(t *testing.T) {
	h := start(t, shWorker(reportScript), basePolicy, nil)
	ctx := t.Context()
	schedule := func() string {
		j, err := h.c.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range j {
			if x.Name == "prune" {
				return x.Schedule
			}
		}
		t.Fatal("no prune job")
		return ""
	}
	if s := schedule(); s != "@hourly" {
		t.Fatalf("schedule %q", s)
	}

	// An invalid policy (unknown key, bad schedule) is rejected over the API.
	writePolicy(t, h.policy, "version = 1\n[schedule]\nprune = \"every tuesday\"\nbogus = 1\n")
	res, err := h.c.Reload(ctx)
	var ce *client.Error
	if !errors.As(err, &ce) || res.OK || !strings.Contains(res.Error, h.policy+":3:") {
		t.Fatalf("reload of invalid policy: res=%+v err=%v", res, err)
	}
	if s := schedule(); s != "@hourly" {
		t.Fatalf("old policy not kept: schedule %q", s)
	}
	st, err := h.c.Status(ctx)
	if err != nil || st.PolicyError == "" {
		t.Fatalf("status does not expose the policy error: %+v %v", st, err)
	}
	m, err := h.c.Metrics(ctx)
	if err != nil || !strings.Contains(m, "stowage_policy_valid 0") {
		t.Fatalf("metrics after bad reload: %v\n%s", err, m)
	}
	// A job still runs under the old policy.
	r, err := h.c.Trigger(ctx, "verify", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = h.c.Wait(ctx, r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("run under kept policy: %+v %v", r, err)
	}

	// SIGHUP reloads a fixed policy.
	writePolicy(t, h.policy, "version = 1\n[schedule]\nprune = \"@every 5m\"\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP reload", func() bool { return schedule() == "@every 5m" })
	if st, _ := h.c.Status(ctx); st.PolicyError != "" {
		t.Fatalf("policy error not cleared: %q", st.PolicyError)
	}
	if m, _ := h.c.Metrics(ctx); !strings.Contains(m, "stowage_policy_valid 1") {
		t.Fatalf("metrics after good reload:\n%s", m)
	}
}

func TestFailingWorkerIsFailedRun(t *testing.T) {
	h := start(t, shWorker(`echo "prune: not implemented yet" >&2; exit 3`), basePolicy, nil)
	ctx := t.Context()
	r, err := h.c.Trigger(ctx, "prune", true)
	if err != nil {
		t.Fatal(err)
	}
	r, err = h.c.Wait(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != api.OutcomeFailed || r.ExitCode != 3 || !strings.Contains(r.Error, "not implemented yet") {
		t.Fatalf("run = %+v", r)
	}
	// The report endpoint by job returns the same run from the state DB.
	l, err := h.c.Latest(ctx, "prune")
	if err != nil || l.ID != r.ID || l.Outcome != api.OutcomeFailed {
		t.Fatalf("latest = %+v, %v", l, err)
	}
	m, _ := h.c.Metrics(ctx)
	// A dry run is not counted: a plan is not the state of the store.
	if !strings.Contains(m, `stowage_job_runs_total{outcome="failed",stowage_job="prune"} 0`) {
		t.Fatalf("metrics:\n%s", m)
	}
	// Unknown jobs and runs are 404s; a second trigger of a busy job is 409.
	if _, err := h.c.Trigger(ctx, "nope", false); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	if _, err := h.c.Run(ctx, "20990101T000000.000Z-prune-0000"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("unknown run: %v", err)
	}
}

func TestWorkerTimeoutAndBusy(t *testing.T) {
	h := start(t, shWorker(`sleep 30`), "version = 1\n[schedule]\njitter = \"0\"\nrun_timeout = \"1s\"\n", nil)
	ctx := t.Context()
	r, err := h.c.Trigger(ctx, "refresh", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.c.Trigger(ctx, "refresh", false); !errors.Is(err, client.ErrBusy) {
		t.Fatalf("second trigger: %v, want busy", err)
	}
	r, err = h.c.Wait(ctx, r.ID)
	if err != nil || r.Outcome != api.OutcomeTimedOut {
		t.Fatalf("run = %+v, %v", r, err)
	}
}

func TestWorkerEnvironmentAndReportMetrics(t *testing.T) {
	for k, v := range map[string]string{
		"NOTIFY_SOCKET": "/nonexistent/notify", "LISTEN_FDS": "1", "LISTEN_PID": "1",
		"LISTEN_FDNAMES": "control", "WATCHDOG_USEC": "600000000", "WATCHDOG_PID": "1", "INVOCATION_ID": "abc",
	} {
		t.Setenv(k, v)
	}
	// The summary lists the service-manager variables the worker saw.
	script := `leak=$(env | grep -E '^(NOTIFY_SOCKET|LISTEN_|WATCHDOG_|INVOCATION_ID)' | cut -d= -f1 | tr '\n' ' ')
printf '{"job":"%s","summary":"leaked:%s","events":[{"kind":"image_removed","severity":"low","message":"removed x","image":"abc","bytes":7}],"metrics":{"freed_bytes":42,"bad-name.x":1}}\n' "$2" "$leak"`
	h := start(t, shWorker(script), basePolicy, nil)
	ctx := t.Context()
	r, err := h.c.Trigger(ctx, "prune", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = h.c.Wait(ctx, r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("run = %+v, %v", r, err)
	}
	if r.Summary != "leaked:" {
		t.Fatalf("worker inherited service variables: %q", r.Summary)
	}
	if !strings.Contains(string(r.Report), `"image_removed"`) {
		t.Fatalf("report not kept: %s", r.Report)
	}
	m, _ := h.c.Metrics(ctx)
	for _, want := range []string{"stowage_prune_freed_bytes 42", `stowage_job_freed_bytes_total{stowage_job="prune"} 42`,
		`stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`, `stowage_job_running{stowage_job="prune"} 0`} {
		if !strings.Contains(m, want) {
			t.Fatalf("metrics lack %s:\n%s", want, m)
		}
	}
	// Only documented figures are exported.
	if strings.Contains(m, "bad_name") {
		t.Fatalf("undocumented report figure exported:\n%s", m)
	}
	jobs, _ := h.c.Jobs(ctx)
	if jobs[2].Name != "prune" || jobs[2].LastRun == nil || jobs[2].LastRun.ID != r.ID {
		t.Fatalf("jobs: %+v", jobs[2])
	}
}

func TestCatchUpAtStart(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := runs.New(db, 0)
	// prune (@hourly) last ran 3 hours ago; verify (@daily) 1 hour ago.
	for job, ago := range map[string]time.Duration{"prune": 3 * time.Hour, "verify": time.Hour} {
		st := time.Now().Add(-ago)
		if err := store.Put(&api.Run{ID: runs.NewID(job, st), Job: job, Started: st, Finished: st.Add(time.Second), Outcome: api.OutcomeSucceeded}); err != nil {
			t.Fatal(err)
		}
	}
	h := start(t, shWorker(reportScript), basePolicy, func(o *Options) { o.Runs = store })
	ctx := t.Context()
	waitFor(t, "catch-up run", func() bool {
		l, err := h.c.Latest(ctx, "prune")
		return err == nil && l.Trigger == api.TriggerCatchUp && l.Outcome == api.OutcomeSucceeded
	})
	if l, err := h.c.Latest(ctx, "verify"); err != nil || l.Trigger == api.TriggerCatchUp {
		t.Fatalf("verify was not due: %+v %v", l, err)
	}
}

func TestIdleExit(t *testing.T) {
	h := start(t, shWorker(reportScript), "version = 1\n[schedule]\nprune = \"@every 1h\"\njitter = \"0\"\n",
		func(o *Options) { o.IdleExit = 300 * time.Millisecond })
	// A connected client keeps the daemon up.
	conn, err := net.Dial("unix", h.sock)
	if err != nil {
		t.Fatal(err)
	}
	h.c.Close()
	select {
	case err := <-h.done:
		t.Fatalf("exited with a client connected: %v", err)
	case <-time.After(time.Second):
	}
	conn.Close()
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatal(err)
		}
		h.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not exit when idle")
	}
	if _, err := os.Stat(h.sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestIdleExitWaitsForDueRun(t *testing.T) {
	// A run due within the idle window keeps the daemon up until it ran.
	h := start(t, shWorker(reportScript), "version = 1\n[schedule]\nverify = \"@every 2s\"\njitter = \"0\"\n",
		func(o *Options) { o.IdleExit = 5 * time.Second })
	h.c.Close()
	select {
	case err := <-h.done:
		h.done <- err
		t.Fatalf("exited with a run due: %v", err)
	case <-time.After(7 * time.Second):
	}
	c := client.New(h.sock, nil)
	defer c.Close()
	if l, err := c.Latest(t.Context(), "verify"); err != nil || l.Trigger != api.TriggerSchedule {
		t.Fatalf("scheduled run: %+v %v", l, err)
	}
}
