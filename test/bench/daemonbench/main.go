// Command daemonbench measures a service daemon the way systemd sees it:
// the time from exec to READY=1 on its NOTIFY_SOCKET, its idle RSS, and the
// round-trip latency of a small HTTP request on its unix socket. It is run
// by test/bench/daemon.sh for stowage and for `podman system service`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stowage/stowage/test/bench/benchproc"
)

func main() {
	var (
		socket   = flag.String("socket", "", "unix socket the daemon serves HTTP on")
		path     = flag.String("path", "/v1/status", "HTTP path for the round-trip measurement")
		requests = flag.Int("requests", 2000, "round trips to measure")
		idle     = flag.Duration("idle", 2*time.Second, "idle time before reading RSS")
		timeout  = flag.Duration("timeout", 30*time.Second, "bound on waiting for READY=1")
	)
	flag.Parse()
	if flag.NArg() == 0 || *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: daemonbench -socket PATH [-path P] -- CMD ARGS...")
		os.Exit(2)
	}
	if err := run(*socket, *path, *requests, *idle, *timeout, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "daemonbench:", err)
		os.Exit(1)
	}
}

func run(socket, path string, requests int, idle, timeout time.Duration, argv []string) error {
	dir, err := os.MkdirTemp("", "stwg-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	nsock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	if err := benchproc.WaitReady(conn, start.Add(timeout)); err != nil {
		return err
	}
	ready := time.Since(start)
	readyCPU, err := cpuMs(cmd.Process.Pid)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	get := func(cl *http.Client) error {
		resp, err := cl.Get("http://d" + path)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	// One request first, then idle: RSS of a daemon that has served a client.
	if err := get(c); err != nil {
		return err
	}
	c.CloseIdleConnections()
	time.Sleep(idle)
	rss, err := benchproc.RSSKiB(cmd.Process.Pid, "VmRSS:")
	if err != nil {
		return err
	}
	anon, err := benchproc.RSSKiB(cmd.Process.Pid, "RssAnon:")
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, requests)
	for range requests {
		t := time.Now()
		if err := get(c); err != nil {
			return err
		}
		lat = append(lat, time.Since(t))
	}
	// A fresh connection per request, as each CLI invocation makes.
	fresh := make([]time.Duration, 0, requests/4)
	for range requests / 4 {
		t := time.Now()
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: c.Transport.(*http.Transport).DialContext}}
		if err := get(cl); err != nil {
			return err
		}
		fresh = append(fresh, time.Since(t))
	}
	slices.Sort(lat)
	slices.Sort(fresh)
	fmt.Printf("ready_ms=%.1f ready_cpu_ms=%d rss_kib=%d rss_anon_kib=%d p50_us=%d p99_us=%d fresh_p50_us=%d fresh_p99_us=%d\n",
		float64(ready.Microseconds())/1000, readyCPU, rss, anon, pct(lat, 50).Microseconds(), pct(lat, 99).Microseconds(),
		pct(fresh, 50).Microseconds(), pct(fresh, 99).Microseconds())
	return nil
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

// cpuMs is the user+system CPU time the process has used (10 ms ticks):
// on a busy machine a steadier measure of start-up work than wall time.
func cpuMs(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return (u + k) * 10, nil // USER_HZ is 100 on Linux
}
