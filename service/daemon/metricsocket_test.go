package daemon_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/test/testenv"
)

// activated is the real binary started by systemd-socket-activate on a
// unix control socket and a TCP metrics socket, with the names the units
// give them.
type activated struct {
	cmd    *exec.Cmd
	exited chan error
	stderr *bytes.Buffer
}

func activate(t *testing.T, bin, sock, metricsAddr string, env, args []string) *activated {
	t.Helper()
	a := []string{"-l", sock, "-l", metricsAddr, "--fdname=control:metrics", "-E", "PATH", "-E", "HOME"}
	for _, kv := range env {
		a = append(a, "-E", kv)
	}
	a = append(append(a, bin), args...)
	d := &activated{cmd: exec.Command("systemd-socket-activate", a...), exited: make(chan error, 1), stderr: &bytes.Buffer{}}
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
	return d
}

// freeAddr is a loopback TCP address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func scrape(ctx context.Context, hc *http.Client, method, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func promtoolCheck(t *testing.T, what, text string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics (%s): %v\n%s\n--- input:\n%s", what, err, out, text)
	}
}

// TestMetricsRealRuns runs the real binary the way the units start it,
// with the control socket and stowage-metrics.socket's fd: real refresh,
// verify and prune workers on a real podman store. The textfile and both
// /metrics expositions pass promtool; the metrics fd serves GET /metrics
// and nothing else; the daemon idle-exits while being scraped every half
// second; and a daemon activated by a scrape alone serves (and writes) the
// counters of the previous one from the state database.
func TestMetricsRealRuns(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "systemd-socket-activate", "podman", "promtool")
	bin := testenv.Stowage(t)
	p := testenv.NewPodman(t, "vfs")
	p.Import(t, "localhost/stwg-metrics/a:1", map[string]string{"a.txt": "alpha"})
	p.Import(t, "localhost/stwg-metrics/b:1", map[string]string{"b.txt": "bravo bravo"})
	// Nothing listens on port 1: refresh cannot check this one and fails.
	p.Import(t, "127.0.0.1:1/stwg-metrics/c:1", map[string]string{"c.txt": "charlie"})

	dir := t.TempDir()
	textDir := filepath.Join(dir, "node-exporter")
	if err := os.Mkdir(textDir, 0o755); err != nil {
		t.Fatal(err)
	}
	textfile := filepath.Join(textDir, "stowage.prom")
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte(`version = 1
[schedule]
jitter = "0"
refresh = "@weekly"
verify = "@weekly"
prune = "@weekly"
volumes = "@weekly"
[refresh]
timeout = "5s"
[prune]
quota = "1KiB"
min_age = "0"
keep_last = 0
[metrics]
textfile = "`+textfile+`"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	args := append(append([]string{}, p.Flags()...), "--user", "--state-dir", filepath.Join(dir, "state"), "--policy", pol, "daemon", "--idle-exit", "3s")
	addr := freeAddr(t)
	d := activate(t, bin, sock, addr, p.Env, args)
	waitFor(t, "listening socket", func() bool { _, err := os.Stat(sock); return err == nil })

	c := client.New(sock, nil)
	defer c.Close()
	ctx := t.Context()
	if _, err := c.Status(ctx); err != nil {
		t.Fatalf("first request: %v", err)
	}
	waitFor(t, "textfile at start", func() bool { _, err := os.Stat(textfile); return err == nil })

	// Real runs: refresh fails (no registry answers on 127.0.0.1:1), verify
	// and prune succeed; prune frees the three images.
	for _, job := range []string{"refresh", "verify", "prune"} {
		out, err := testenv.RunErr(nil, bin, "--user", "trigger", job, "--wait", "--socket", sock)
		t.Logf("trigger %s: %v\n%s", job, err, out)
	}
	waitFor(t, "textfile after the runs", func() bool {
		b, _ := os.ReadFile(textfile)
		return strings.Contains(string(b), `stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`)
	})
	b, err := os.ReadFile(textfile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	promtoolCheck(t, "textfile", text)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^stowage_job_last_run_success\{stowage_job="refresh"\} 0$`),
		regexp.MustCompile(`(?m)^stowage_job_runs_total\{outcome="failed",stowage_job="refresh"\} 1$`),
		regexp.MustCompile(`(?m)^stowage_job_last_run_success\{stowage_job="prune"\} 1$`),
		regexp.MustCompile(`(?m)^stowage_job_last_run_timestamp_seconds\{stowage_job="verify"\} 1\.\d+e\+09$`),
		regexp.MustCompile(`(?m)^stowage_job_last_success_timestamp_seconds\{stowage_job="prune"\} 1\.\d+e\+09$`),
		regexp.MustCompile(`(?m)^stowage_job_freed_bytes_total\{stowage_job="prune"\} [1-9]`),
		regexp.MustCompile(`(?m)^stowage_prune_removed_images 3$`),
		regexp.MustCompile(`(?m)^stowage_refresh_references\{status="error"\} 1$`),
		regexp.MustCompile(`(?m)^stowage_job_schedule_period_seconds\{stowage_job="prune"\} 604800$`),
	} {
		if !want.MatchString(text) {
			t.Errorf("textfile does not match %s", want)
		}
	}
	if strings.Contains(text, "go_") || strings.Contains(text, "process_") {
		t.Errorf("process metrics in the textfile")
	}

	// The control socket's /metrics and the metrics fd's.
	live, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	promtoolCheck(t, "control socket /metrics", live)
	hc := &http.Client{Timeout: 5 * time.Second}
	code, tcp, err := scrape(ctx, hc, http.MethodGet, "http://"+addr+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape of the metrics fd: %d %v", code, err)
	}
	promtoolCheck(t, "metrics fd /metrics", tcp)
	for _, want := range []string{"go_goroutines ", `stowage_job_running{stowage_job="prune"} 0`, `stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`} {
		if !strings.Contains(tcp, want) {
			t.Errorf("metrics fd lacks %s", want)
		}
	}
	// Read-only: the control API is not there.
	if code, _, err := scrape(ctx, hc, http.MethodGet, "http://"+addr+"/v1/status"); err != nil || code != http.StatusNotFound {
		t.Errorf("GET /v1/status on the metrics fd: %d %v", code, err)
	}
	if code, _, err := scrape(ctx, hc, http.MethodPost, "http://"+addr+"/v1/jobs/prune/runs"); err != nil || code != http.StatusNotFound {
		t.Errorf("POST a run on the metrics fd: %d %v", code, err)
	}
	if code, _, err := scrape(ctx, hc, http.MethodPost, "http://"+addr+"/metrics"); err != nil || code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d %v", code, err)
	}

	// Scrapes (kept-alive connection, every half second) do not keep the
	// daemon up: it exits 3 s after the last control client.
	c.Close()
	start := time.Now()
	scrapes := 0
	var exitErr error
scraping:
	for {
		select {
		case exitErr = <-d.exited:
			d.exited <- exitErr
			break scraping
		case <-time.After(500 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("daemon still up after 30 s of scrapes (%d)", scrapes)
		}
		if code, _, err := scrape(ctx, hc, http.MethodGet, "http://"+addr+"/metrics"); err == nil && code == http.StatusOK {
			scrapes++
		}
	}
	if exitErr != nil {
		t.Fatalf("daemon exit: %v", exitErr)
	}
	if scrapes < 4 || !strings.Contains(d.stderr.String(), "exiting: idle") {
		t.Fatalf("exit after %d scrapes in %v, not an idle exit:\n%s", scrapes, time.Since(start), d.stderr.String())
	}
	t.Logf("idle exit after %v and %d scrapes", time.Since(start).Round(time.Millisecond), scrapes)

	// A scrape alone activates a new daemon, which serves (and writes) the
	// previous daemon's counters from the state database.
	if err := os.Remove(textfile); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	addr = freeAddr(t)
	activate(t, bin, sock, addr, p.Env, args)
	waitFor(t, "metrics socket", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	code, tcp, err = scrape(ctx, hc, http.MethodGet, "http://"+addr+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape activating a new daemon: %d %v", code, err)
	}
	for _, want := range []string{`stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`, `stowage_job_runs_total{outcome="failed",stowage_job="refresh"} 1`} {
		if !strings.Contains(tcp, want) {
			t.Errorf("after restart, scrape lacks %s:\n%s", want, tcp)
		}
	}
	waitFor(t, "textfile rewritten at start", func() bool {
		b, _ := os.ReadFile(textfile)
		return strings.Contains(string(b), `stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`)
	})
}
