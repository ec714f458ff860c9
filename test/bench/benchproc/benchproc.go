// Package benchproc holds what the benchmark drivers (daemonbench,
// stateload) need of the process they measure: waiting for its READY=1 on
// NOTIFY_SOCKET and reading its memory from /proc.
package benchproc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// WaitReady reads sd_notify messages from conn until one holds READY=1, or
// fails at deadline.
func WaitReady(conn *net.UnixConn, deadline time.Time) error {
	_ = conn.SetReadDeadline(deadline)
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("waiting for READY=1: %w", err)
		}
		for _, l := range strings.Split(string(buf[:n]), "\n") {
			if l == "READY=1" {
				return nil
			}
		}
	}
}

// RSSKiB sums a /proc/PID/status field ("VmRSS:", "RssAnon:") over the
// process and its descendants (podman's service may fork helpers; stowage's
// daemon has none at idle).
func RSSKiB(pid int, field string) (int, error) {
	total, found := 0, false
	pids := []int{pid}
	for len(pids) > 0 {
		p := pids[0]
		pids = pids[1:]
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), field); ok {
				n, _ := strconv.Atoi(strings.Fields(v)[0])
				total += n
				found = true
			}
		}
		f.Close()
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, k := range strings.Fields(string(kids)) {
			if n, err := strconv.Atoi(k); err == nil {
				pids = append(pids, n)
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
	}
	return total, nil
}
