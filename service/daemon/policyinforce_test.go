package daemon_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/test/testenv"
)

// daemonProc is a real `stowage daemon` process (not socket-activated).
type daemonProc struct {
	cmd    *exec.Cmd
	sock   string
	stderr *syncBuf
	exited chan error
	c      *client.Client
}

func startDaemonProc(t *testing.T, bin, dir, pol string, env []string, extra ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{sock: filepath.Join(dir, "ctl.sock"), stderr: &syncBuf{}, exited: make(chan error, 1)}
	// Not under t.TempDir(): the workers ask podman about the store, and
	// podman refuses a runroot path longer than 50 bytes.
	store, err := os.MkdirTemp("", "stwg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(store) })
	args := []string{"--user", "--state-dir", filepath.Join(dir, "state"),
		"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs",
		"--policy", pol, "daemon", "--socket", d.sock}
	d.cmd = exec.Command(bin, append(args, extra...)...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		err := <-d.exited
		d.exited <- err
		t.Logf("daemon stderr:\n%s", d.stderr.String())
	})
	d.c = client.New(d.sock, nil)
	t.Cleanup(func() { d.c.Close() })
	waitFor(t, "daemon up", func() bool { _, err := d.c.Status(t.Context()); return err == nil })
	return d
}

// waitExit waits for the process to end within limit.
func (d *daemonProc) waitExit(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-d.exited:
		d.exited <- err
		return err
	case <-time.After(limit):
		t.Fatalf("daemon did not exit within %v", limit)
		return nil
	}
}

// syncBuf is a goroutine-safe strings.Builder.
type syncBuf struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// pruneLimit triggers a prune run through the CLI, waits for it, and
// returns the run and the limit_bytes of its report.
func pruneLimit(t *testing.T, bin, sock string, dryRun bool) (api.Run, int64) {
	t.Helper()
	args := []string{"--user", "trigger", "prune", "--wait", "--format", "json", "--socket", sock}
	if dryRun {
		args = append(args, "--dry-run")
	}
	out, err := testenv.RunErr(nil, bin, args...)
	if err != nil {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	var run api.Run
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	var rep struct {
		LimitBytes int64 `json:"limit_bytes"`
	}
	if len(run.Report) > 0 {
		if err := json.Unmarshal(run.Report, &rep); err != nil {
			t.Fatalf("report %s: %v", run.Report, err)
		}
	}
	return run, rep.LimitBytes
}

// TestRunsUseThePolicyInForce: a real daemon hands each real worker the
// policy it loaded. Editing the file without a reload changes nothing; a
// broken file plus reload keeps the old policy for runs too, and the log
// says why; status names the files in force; a FIFO among the drop-ins is
// refused, and SIGTERM still ends the daemon at once.
func TestRunsUseThePolicyInForce(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	dropin := filepath.Join(pol+".d", "10-quota.toml")
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(pol, "version = 1\n[schedule]\njitter = \"0\"\nprune = \"@weekly\"\n")
	write(dropin, "[prune]\nquota = \"1GiB\"\n")
	n := listenNotify(t, dir)
	d := startDaemonProc(t, bin, dir, pol, []string{"NOTIFY_SOCKET=" + n.path})
	ctx := t.Context()

	// status names the files in force, drop-in included.
	st, err := d.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{policy.EmbeddedSource, pol, dropin}; !reflect.DeepEqual(st.PolicyFiles, want) || st.PolicyPath != pol {
		t.Fatalf("status policy %q %v, want %q %v", st.PolicyPath, st.PolicyFiles, pol, want)
	}
	if out, err := testenv.RunErr(nil, bin, "--user", "status", "--socket", d.sock); err != nil || !strings.Contains(out, dropin) {
		t.Fatalf("status text does not name %s: %v\n%s", dropin, err, out)
	}
	if _, limit := pruneLimit(t, bin, d.sock, true); limit != 1<<30 {
		t.Fatalf("limit %d, want 1GiB", limit)
	}

	// Edited, not reloaded: runs keep the policy in force (a worker reading
	// the file would see prune disabled and a 2GiB quota).
	write(pol, "version = 1\n[schedule]\njitter = \"0\"\nprune = \"@weekly\"\n[prune]\nenabled = false\n")
	write(dropin, "[prune]\nquota = \"2GiB\"\n")
	run, limit := pruneLimit(t, bin, d.sock, false)
	if run.Outcome != api.OutcomeSucceeded || strings.Contains(run.Summary, "disabled") || limit != 1<<30 {
		t.Fatalf("run after an edit without reload: %s %q limit %d; want the loaded policy (enabled, 1GiB)", run.Outcome, run.Summary, limit)
	}

	// Broken file plus reload: rejected, the old policy schedules and runs.
	write(pol, "version = 1\n[prune\n")
	if out, err := testenv.RunErr(nil, bin, "--user", "reload", "--socket", d.sock); err == nil || !strings.Contains(out+err.Error(), "previous policy still in force") {
		t.Fatalf("reload of a broken file: %v\n%s", err, out)
	}
	if !strings.Contains(d.stderr.String(), "policy invalid, keeping the previous policy: "+pol+":2") {
		t.Fatalf("the log does not say why the reload was refused:\n%s", d.stderr.String())
	}
	waitFor(t, "STATUS= after the refused reload", func() bool { return n.has("STATUS=idle; policy invalid") })
	run, limit = pruneLimit(t, bin, d.sock, true)
	if run.Outcome != api.OutcomeSucceeded || limit != 1<<30 {
		t.Fatalf("run after a refused reload: %s %q %s limit %d", run.Outcome, run.Summary, run.Error, limit)
	}
	if st, _ := d.c.Status(ctx); st.PolicyError == "" || !reflect.DeepEqual(st.PolicyFiles, []string{policy.EmbeddedSource, pol, dropin}) {
		t.Fatalf("status after a refused reload: %+v", st)
	}

	// Fixed and reloaded: the new policy reaches the runs.
	write(pol, "version = 1\n[schedule]\njitter = \"0\"\nprune = \"@weekly\"\n")
	if out, err := testenv.RunErr(nil, bin, "--user", "reload", "--socket", d.sock); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if _, limit := pruneLimit(t, bin, d.sock, true); limit != 2<<30 {
		t.Fatalf("limit %d after reload, want 2GiB", limit)
	}

	// A FIFO named *.toml among the drop-ins: the reload is refused with
	// the file named (it used to block forever), and SIGTERM ends the daemon.
	fifo := filepath.Join(pol+".d", "50-fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the FIFO refused", func() bool { return strings.Contains(d.stderr.String(), fifo+": not a regular file") })
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.waitExit(t, 15*time.Second); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
}

// TestIdleExitingDaemonRunsByItself is the packaged set-up in miniature
// (idle exit, restarted from outside as the timer does) with real
// processes: a fresh install whose daemon exits idle before the first slot
// still runs the job at the next start after it, once.
func TestIdleExitingDaemonRunsByItself(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	body := "version = 1\n[schedule]\njitter = \"0\"\nprune = \"@every 6s\"\nverify = \"@weekly\"\nrefresh = \"@weekly\"\nvolumes = \"@weekly\"\n[prune]\nmin_free = \"0\"\n"
	if err := os.WriteFile(pol, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	first := time.Now()
	// Start 1 (fresh install): the first slot is 6 s away, beyond the 1 s
	// idle exit: it exits without running anything.
	d := startDaemonProc(t, bin, dir, pol, nil, "--idle-exit", "1s")
	d.c.Close()
	if err := d.waitExit(t, 10*time.Second); err != nil {
		t.Fatalf("start 1: %v", err)
	}
	if time.Since(first) > 6*time.Second {
		t.Skip("start 1 outlived the first slot (machine too slow for this timing)")
	}
	if strings.Contains(d.stderr.String(), "job started") {
		t.Fatalf("start 1 ran a job:\n%s", d.stderr.String())
	}
	// Start 2, after the slot (the timer's start): one catch-up run of the
	// never-run job, then idle exit.
	time.Sleep(time.Until(first.Add(6500 * time.Millisecond)))
	d = startDaemonProc(t, bin, dir, pol, nil, "--idle-exit", "1s")
	var run *api.Run
	waitFor(t, "the catch-up run", func() bool {
		l, err := d.c.Latest(ctx, "prune")
		run = l
		return err == nil && l.Outcome.Done()
	})
	if run.Trigger != api.TriggerCatchUp || run.Outcome != api.OutcomeSucceeded {
		t.Fatalf("start 2 run: %+v", run)
	}
	d.c.Close()
	if err := d.waitExit(t, 15*time.Second); err != nil {
		t.Fatalf("start 2: %v", err)
	}
	if n := strings.Count(d.stderr.String(), "job started"); n != 1 {
		t.Fatalf("start 2 started %d runs, want 1:\n%s", n, d.stderr.String())
	}
}
