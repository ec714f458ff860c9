package worker

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClean(t *testing.T) {
	in := []string{"PATH=/usr/bin", "NOTIFY_SOCKET=/run/x", "LISTEN_FDS=1", "LISTEN_PID=9", "LISTEN_FDNAMES=control",
		"WATCHDOG_USEC=1", "WATCHDOG_PID=9", "INVOCATION_ID=abc", "HOME=/root", "LISTENER=keep", "XDG_RUNTIME_DIR=/run/user/0"}
	want := []string{"PATH=/usr/bin", "HOME=/root", "LISTENER=keep", "XDG_RUNTIME_DIR=/run/user/0"}
	if got := Clean(in); !slices.Equal(got, want) {
		t.Fatalf("Clean = %v, want %v", got, want)
	}
}

func sh(script string) *Spawner {
	return &Spawner{Exe: "/bin/sh", GlobalArgs: []string{"-c", script, "sh", "--policy", "/p.toml"}, Env: os.Environ()}
}

func TestRun(t *testing.T) {
	cases := []struct {
		name     string
		script   string
		dryRun   bool
		wantErr  bool
		wantCode int
		summary  string
	}{
		{"report", `printf '{"job":"prune","summary":"args %s"}' "$*"`, true, false, 0, "args --policy /p.toml run prune --format json --log-format json --dry-run"},
		{"failing with report", `printf '{"job":"prune","summary":"partial"}'; exit 2`, false, true, 2, "partial"},
		{"not implemented", `echo "prune: not implemented yet" >&2; exit 1`, false, true, 1, ""},
		{"JSON record last", `echo '{"level":"ERROR","msg":"prune refused","reason":"store inconsistent"}' >&2; exit 1`, false, true, 1, ""},
		{"garbage", `echo hello`, false, true, 0, ""},
		{"other job", `printf '{"job":"verify"}'`, false, true, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := sh(c.script).Run(t.Context(), "prune", c.dryRun)
			if (err != nil) != c.wantErr || (err != nil && !errors.Is(err, ErrFailed)) {
				t.Fatalf("err = %v", err)
			}
			if res.ExitCode != c.wantCode {
				t.Fatalf("exit code %d, want %d", res.ExitCode, c.wantCode)
			}
			got := ""
			if res.Common != nil {
				got = res.Common.Summary
			}
			if got != c.summary {
				t.Fatalf("summary %q, want %q", got, c.summary)
			}
			if c.name == "not implemented" && !strings.Contains(err.Error(), "not implemented yet") {
				t.Fatalf("stderr not in error: %v", err)
			}
			if c.name == "JSON record last" && !strings.HasSuffix(err.Error(), `exit status 1: prune refused reason="store inconsistent"`) {
				t.Fatalf("last record not in error: %v", err)
			}
		})
	}
}

// TestRunCancelKillsProcessGroup: a canceled run stops the worker and its
// children (a worker re-executed into a user namespace is two processes).
func TestRunCancelKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := sh(`sleep 60 & echo $! >`+pidFile+`; wait`).Run(ctx, "verify", false)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 15*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStderrIsLogged: the worker's JSON log records reach the daemon's
// logger at their level with their attributes, tagged with the job and
// source=worker; other lines arrive verbatim at warning level.
func TestStderrIsLogged(t *testing.T) {
	var buf strings.Builder
	sp := sh(`echo '{"time":"x","level":"ERROR","msg":"cannot open store","err":"locked"}' >&2
echo 'not json' >&2; printf '{"level":"DEBUG","msg":"partial","n":1}' >&2; printf '{"job":"verify"}'`)
	sp.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := sp.Run(t.Context(), "verify", false); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		_, l, _ = strings.Cut(l, " ") // the daemon's own time
		lines = append(lines, l)
	}
	want := []string{
		`level=ERROR msg="cannot open store" job=verify source=worker err=locked`,
		`level=WARN msg="not json" job=verify source=worker`,
		`level=DEBUG msg=partial job=verify source=worker n=1`,
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("logged:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// TestPolicyHandover: the snapshot arrives on PolicyFD, named by
// --policy-fd, read-only and sealed.
func TestPolicyHandover(t *testing.T) {
	snap := []byte(`{"format":1,"sources":[]}`)
	// The summary is the descriptor's content plus whether writing to it fails.
	script := `data=$(cat <&3); if (printf x >&3) 2>/dev/null; then w=writable; else w=sealed; fi
printf '{"job":"prune","summary":"%s %s %s"}' "$*" "$w" "$(printf %s "$data" | base64 -w0)"`
	sp := sh(script)
	sp.Policy = snap
	res, err := sp.Run(t.Context(), "prune", false)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Stderr)
	}
	fields := strings.Fields(res.Common.Summary)
	if len(fields) < 3 {
		t.Fatalf("summary %q", res.Common.Summary)
	}
	args := strings.Join(fields[:len(fields)-2], " ")
	if !strings.HasSuffix(args, "run prune --format json --log-format json --policy-fd 3") {
		t.Fatalf("args %q lack --policy-fd 3", args)
	}
	if fields[len(fields)-2] != "sealed" {
		t.Fatalf("the worker could write to the policy descriptor")
	}
	if got, want := fields[len(fields)-1], "eyJmb3JtYXQiOjEsInNvdXJjZXMiOltdfQ=="; got != want {
		t.Fatalf("policy on fd 3 (base64) %s, want %s", got, want)
	}
}

func TestArgsOrder(t *testing.T) {
	s := Spawner{GlobalArgs: []string{"--user"}, JobArgs: []string{"--pull", "a:1"}, Policy: []byte("x")}
	got := strings.Join(s.Args("refresh", false), " ")
	if want := "--user run refresh --format json --log-format json --policy-fd 3 --pull a:1"; got != want {
		t.Fatalf("Args = %q, want %q", got, want)
	}
}
