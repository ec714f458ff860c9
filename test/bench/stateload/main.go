// Command stateload measures whether a stowage daemon's memory stays flat
// while clients read a full state DB: it starts the daemon command given
// after "--", waits for READY=1 on its NOTIFY_SOCKET, then sends -rounds
// rounds of the requests `stowage status`, `stowage jobs`, `stowage report
// JOB` and `stowage history` make (GET /v1/status, /v1/jobs,
// /v1/jobs/JOB/last for each job in turn, /v1/runs), sampling the daemon's
// VmRSS every -sample rounds. It prints one line of key=value figures: RSS
// after READY and after the first round, at the end, after idling, the
// maximum, and the bytes served. It is run by test/bench/state.sh.
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
	"strings"
	"syscall"
	"time"

	"github.com/stowage/stowage/test/bench/benchproc"
)

func main() {
	var (
		socket  = flag.String("socket", "", "unix socket the daemon serves its control API on")
		rounds  = flag.Int("rounds", 1000, "rounds of requests (one of each kind per round)")
		sample  = flag.Int("sample", 50, "sample VmRSS every this many rounds")
		jobList = flag.String("jobs", "refresh,verify,prune,volumes", "jobs whose last report is read, in turn")
		idle    = flag.Duration("idle", 3*time.Second, "idle time before the last sample")
		empty   = flag.Bool("empty", false, "the state DB is empty: a job without runs answers 404")
	)
	flag.Parse()
	if flag.NArg() == 0 || *socket == "" {
		fmt.Fprintln(os.Stderr, "usage: stateload -socket PATH [-rounds N] -- CMD ARGS...")
		os.Exit(2)
	}
	if err := run(*socket, *rounds, max(*sample, 1), strings.Split(*jobList, ","), *idle, *empty, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "stateload:", err)
		os.Exit(1)
	}
}

func run(socket string, rounds, sample int, jobs []string, idle time.Duration, empty bool, argv []string) error {
	dir, err := os.MkdirTemp("", "stwg-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	nsock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: nsock, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer conn.Close()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+nsock)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
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
	if err := benchproc.WaitReady(conn, start.Add(60*time.Second)); err != nil {
		return err
	}
	ready := time.Since(start)
	pid := cmd.Process.Pid

	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}}
	var served int64
	get := func(path string) error {
		resp, err := c.Get("http://d" + path)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		if empty && resp.StatusCode == http.StatusNotFound && strings.HasSuffix(path, "/last") {
			return nil
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		served += n
		return nil
	}

	rssReady, err := benchproc.RSSKiB(pid, "VmRSS:")
	if err != nil {
		return err
	}
	var first, last, maxRSS int
	samples := 0
	t0 := time.Now()
	for i := range rounds {
		paths := []string{"/v1/status", "/v1/jobs", "/v1/jobs/" + jobs[i%len(jobs)] + "/last", "/v1/runs"}
		for _, p := range paths {
			if err := get(p); err != nil {
				return err
			}
		}
		if i == 0 || (i+1)%sample == 0 || i == rounds-1 {
			rss, err := benchproc.RSSKiB(pid, "VmRSS:")
			if err != nil {
				return err
			}
			if i == 0 {
				first = rss
			}
			last, maxRSS = rss, max(maxRSS, rss)
			samples++
		}
	}
	elapsed := time.Since(t0)
	c.CloseIdleConnections()
	time.Sleep(idle)
	rssIdle, err := benchproc.RSSKiB(pid, "VmRSS:")
	if err != nil {
		return err
	}
	fmt.Printf("ready_ms=%d rounds=%d requests=%d served_mib=%.1f elapsed_s=%.1f rss_ready_kib=%d rss_first_kib=%d rss_last_kib=%d rss_max_kib=%d rss_idle_kib=%d samples=%d\n",
		ready.Milliseconds(), rounds, rounds*4, float64(served)/(1<<20), elapsed.Seconds(), rssReady, first, last, maxRSS, rssIdle, samples)
	return nil
}
