package daemon_test

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/test/testenv"
)

// notifyListener records sd_notify datagrams.
type notifyListener struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T, dir string) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(dir, "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifyListener) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, prefix) {
				return true
			}
		}
	}
	return false
}

func (n *notifyListener) all() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.msgs, " | ")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSocketActivation starts the real binary the way systemd does: the
// first connection on the named socket execs the daemon, which reports
// READY=1, answers, runs a dry prune through a real worker against a real
// podman store, and exits when idle.
func TestSocketActivation(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "systemd-socket-activate", "podman")
	bin := testenv.Stowage(t)
	p := testenv.NewPodman(t, "vfs")
	idA := p.Import(t, "localhost/stwg-daemon/a:1", map[string]string{"a.txt": "alpha"})
	idB := p.Import(t, "localhost/stwg-daemon/b:1", map[string]string{"b.txt": "bravo bravo"})

	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\nprune = \"@weekly\"\n[prune]\nquota = \"1KiB\"\nmin_age = \"0\"\nkeep_last = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	n := listenNotify(t, dir)

	args := []string{"-l", sock, "--fdname=control", "-E", "NOTIFY_SOCKET=" + n.path, "-E", "WATCHDOG_USEC=200000", "-E", "PATH", "-E", "HOME"}
	for _, kv := range p.Env {
		args = append(args, "-E", kv)
	}
	args = append(args, bin)
	args = append(args, p.Flags()...)
	args = append(args, "--user", "--state-dir", filepath.Join(dir, "state"), "--policy", pol, "daemon", "--idle-exit", "2s")
	cmd := exec.Command("systemd-socket-activate", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		exited <- nil
		t.Logf("daemon stderr:\n%s", stderr.String())
	})
	waitFor(t, "listening socket", func() bool { _, err := os.Stat(sock); return err == nil })
	time.Sleep(200 * time.Millisecond)
	if n.has("READY=1") {
		t.Fatal("READY=1 before the first connection: the daemon was not socket-activated")
	}

	c := client.New(sock, nil)
	defer c.Close()
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatalf("first request: %v", err)
	}
	if st.PID != cmd.Process.Pid || st.Mode != "user" {
		t.Fatalf("status %+v: want the activated process %d in user mode", st, cmd.Process.Pid)
	}
	waitFor(t, "READY=1", func() bool { return n.has("READY=1") })
	waitFor(t, "WATCHDOG=1", func() bool { return n.has("WATCHDOG=1") })

	// trigger --dry-run --wait through the CLI: a real worker plans the prune.
	out, err := testenv.RunErr(nil, bin, "--user", "trigger", "prune", "--dry-run", "--wait", "--format", "json", "--socket", sock)
	if err != nil {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	var run api.Run
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	var rep struct {
		report.Common
		Removed []struct {
			ID string `json:"id"`
		} `json:"removed"`
	}
	if err := json.Unmarshal(run.Report, &rep); err != nil {
		t.Fatalf("report %s: %v", run.Report, err)
	}
	if run.Outcome != api.OutcomeSucceeded || !rep.DryRun || rep.Job != "prune" {
		t.Fatalf("run = %+v", run)
	}
	planned := map[string]bool{}
	for _, r := range rep.Removed {
		planned[r.ID] = true
	}
	if !planned[idA] || !planned[idB] {
		t.Fatalf("plan removes %v, want %s and %s", planned, idA, idB)
	}
	// A dry run changes nothing.
	if imgs := p.Run(t, "images", "-q", "--no-trunc"); !strings.Contains(imgs, idA) || !strings.Contains(imgs, idB) {
		t.Fatalf("dry run removed images:\n%s", imgs)
	}
	if !n.has("STATUS=running prune") || !n.has("STATUS=idle") {
		t.Fatalf("no STATUS= updates for the run: %s", n.all())
	}
	// The text report by job name.
	if out, err := testenv.RunErr(nil, bin, "--user", "report", "prune", "--socket", sock); err != nil || !strings.Contains(out, "would remove 2 images") {
		t.Fatalf("report prune: %v\n%s", err, out)
	}

	// reload: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
	if out, err := testenv.RunErr(nil, bin, "--user", "reload", "--socket", sock); err != nil || !strings.Contains(out, "policy reloaded") {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if !n.has("RELOADING=1") || !n.has("MONOTONIC_USEC=") {
		t.Fatalf("no RELOADING=1/MONOTONIC_USEC: %s", n.all())
	}

	c.Close()
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("daemon exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit when idle")
	}
	if !n.has("STOPPING=1") {
		t.Fatalf("no STOPPING=1: %s", n.all())
	}
}

// TestPeerCredentials checks SO_PEERCRED authorization with a real second
// user: system mode lets anyone read but only root act; user mode refuses
// other users altogether.
func TestPeerCredentials(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "setpriv")
	// A copy of the binary and a socket directory that nobody can reach.
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "stowage")
	data, err := os.ReadFile(testenv.Stowage(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		return testenv.RunErr(nil, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin}, args...)...)
	}
	for _, mode := range []string{"--system", "--user"} {
		t.Run(mode, func(t *testing.T) {
			sock := filepath.Join(dir, strings.TrimPrefix(mode, "--")+".sock")
			cmd := exec.Command(bin, mode, "--state-dir", filepath.Join(dir, "state"+mode), "--policy", pol, "daemon", "--socket", sock)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = cmd.Process.Signal(os.Interrupt)
				_ = cmd.Wait()
				t.Logf("daemon stderr:\n%s", stderr.String())
			}()
			waitFor(t, "socket", func() bool { _, err := os.Stat(sock); return err == nil })
			// Let the socket's file mode admit the test user, so the daemon's
			// own check is what decides.
			if err := os.Chmod(sock, 0o666); err != nil {
				t.Fatal(err)
			}
			if out, err := testenv.RunErr(nil, bin, mode, "status", "--socket", sock); err != nil {
				t.Fatalf("root status: %v %s", err, out)
			}
			out, err := asNobody(mode, "status", "--format", "json", "--socket", sock)
			if mode == "--system" {
				var st api.Status
				if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.PID != cmd.Process.Pid {
					t.Fatalf("system mode: nobody cannot read status: %v %s", err, out)
				}
				if out, err := asNobody(mode, "reload", "--socket", sock); err == nil || !strings.Contains(err.Error(), "permission denied for uid 65534") {
					t.Fatalf("system mode: nobody could reload: %v %s", err, out)
				}
				if out, err := asNobody(mode, "trigger", "verify", "--socket", sock); err == nil || !strings.Contains(err.Error(), "permission denied") {
					t.Fatalf("system mode: nobody could trigger: %v %s", err, out)
				}
			} else if err == nil || !strings.Contains(err.Error(), "permission denied for uid "+strconv.Itoa(65534)) {
				t.Fatalf("user mode: nobody was served: %v %s", err, out)
			}
			if out, err := testenv.RunErr(nil, bin, mode, "reload", "--socket", sock); err != nil || !strings.Contains(out, "policy reloaded") {
				t.Fatalf("root reload: %v %s", err, out)
			}
		})
	}
}
