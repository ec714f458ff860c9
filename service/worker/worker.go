// Package worker runs one job as a child process — `stowage run JOB --format
// json` — with a clean environment, and reads the report envelope from its
// standard output. The daemon never touches storage itself (DESIGN.md §1).
package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/service/journal"
)

// maxReport bounds the report read from a worker's stdout.
const maxReport = 64 << 20

// stderrTail is how much of a worker's stderr is kept for the error message.
const stderrTail = 4 << 10

// killGrace is how long a worker may take to exit after SIGTERM.
const killGrace = 10 * time.Second

// Spawner starts workers.
type Spawner struct {
	// Exe is the stowage binary.
	Exe string
	// GlobalArgs are passed before "run" (--policy, --state-dir, --root, ...).
	GlobalArgs []string
	// Env is the child's environment; Clean is applied to it.
	Env []string
	// Logger receives the worker's log records (its stderr); nil drops them.
	Logger *slog.Logger
	// TailInMessage appends a worker record's attributes as key=value to
	// its message. Set it when Logger writes to journald, whose default
	// output shows only MESSAGE; the attributes are fields all the same.
	TailInMessage bool
	// Policy, when set, is the encoded policy snapshot (policy.Snapshot)
	// the worker must use: it is handed over on an inherited, sealed memfd
	// (PolicyFD) and the worker is told so with --policy-fd, so it never
	// reads a policy file itself.
	Policy []byte
	// JobArgs are the job's own flags for this run (after the job name),
	// e.g. refresh's --pull REF or --defer-pulls REASON; the daemon sets
	// them on its per-run copy.
	JobArgs []string
}

// PolicyFD is the descriptor number the policy snapshot has in the worker.
const PolicyFD = 3

// Result is what a finished worker produced.
type Result struct {
	// Raw is the worker's JSON report (nil if it printed none).
	Raw json.RawMessage
	// Common is the parsed envelope (nil if Raw is nil or not a report).
	Common   *report.Common
	ExitCode int
	Stderr   string // tail
}

// ErrFailed wraps every unsuccessful run: non-zero exit, unreadable report.
var ErrFailed = errors.New("worker failed")

// Args returns the child's argument list (without the program name).
func (s *Spawner) Args(job string, dryRun bool) []string {
	args := append([]string(nil), s.GlobalArgs...)
	// JSON log records on stderr, which the daemon re-emits field by field.
	args = append(args, "run", job, "--format", "json", "--log-format", "json")
	if dryRun {
		args = append(args, "--dry-run")
	}
	if s.Policy != nil {
		args = append(args, "--policy-fd", strconv.Itoa(PolicyFD))
	}
	return append(args, s.JobArgs...)
}

// Run runs job to completion. When ctx ends, the worker's process group gets
// SIGTERM, then SIGKILL after a grace period; the error then wraps ctx.Err().
// A worker that exits non-zero or prints no valid report yields an error
// wrapping ErrFailed; whatever report it printed is still returned.
func (s *Spawner) Run(ctx context.Context, job string, dryRun bool) (*Result, error) {
	cmd := exec.CommandContext(ctx, s.Exe, s.Args(job, dryRun)...)
	cmd.Env = Clean(s.Env)
	// Its own process group: a worker that re-executed itself into the
	// rootless user namespace is stopped together with its child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = killGrace
	if s.Policy != nil {
		f, err := sealedFile("stowage-policy", s.Policy)
		if err != nil {
			return &Result{ExitCode: -1}, fmt.Errorf("%w: %s: handing over the policy: %w", ErrFailed, job, err)
		}
		defer f.Close()
		cmd.ExtraFiles = []*os.File{f} // fd 3 = PolicyFD
	}
	var stdout bytes.Buffer
	tail := &tailBuffer{max: stderrTail}
	cmd.Stdout = &limitWriter{w: &stdout, n: maxReport}
	cmd.Stderr = tail
	if s.Logger != nil {
		lw := &lineLogger{log: s.Logger.With(journal.AttrJob, job, journal.AttrSource, "worker"), tail: s.TailInMessage}
		defer lw.flush()
		cmd.Stderr = io.MultiWriter(tail, lw)
	}
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	res := &Result{ExitCode: -1, Stderr: strings.TrimSpace(tail.String())}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if out := bytes.TrimSpace(stdout.Bytes()); len(out) > 0 && json.Valid(out) {
		res.Raw = json.RawMessage(out)
		var c report.Common
		if json.Unmarshal(out, &c) == nil && c.Job != "" {
			res.Common = &c
		}
	}
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("%w: %s: %w", ErrFailed, job, ctx.Err())
	case err != nil:
		return res, fmt.Errorf("%w: %s: %w%s", ErrFailed, job, err, lastLine(res.Stderr))
	case res.Common == nil:
		return res, fmt.Errorf("%w: %s: no JSON report on stdout%s", ErrFailed, job, lastLine(res.Stderr))
	case res.Common.Job != job:
		return res, fmt.Errorf("%w: %s: report is for job %q", ErrFailed, job, res.Common.Job)
	}
	return res, nil
}

// sealedFile returns a read-only view of data: a memfd sealed against any
// change, positioned at its start. Unlike a pipe it never blocks the
// writer, whatever the reader does.
func sealedFile(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing memfd: %w", err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		f.Close()
		return nil, fmt.Errorf("sealing memfd: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("rewinding memfd: %w", err)
	}
	return f, nil
}

// lastLine is the last line of a worker's stderr for an error message; a
// JSON record is shown as its message and key=value attributes.
func lastLine(s string) string {
	if s == "" {
		return ""
	}
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if r := ParseLine([]byte(s)); r.Structured {
		s = r.Message + Tail(r.Attrs)
	}
	return ": " + s
}

// Clean returns env without the variables that belong to the daemon's own
// service manager protocol: NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*,
// INVOCATION_ID. A worker must never notify systemd or claim its sockets.
func Clean(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "NOTIFY_SOCKET", k == "INVOCATION_ID",
			strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, "WATCHDOG_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// limitWriter drops output past n bytes (the report is then invalid JSON,
// which fails the run instead of exhausting the daemon's memory).
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n <= 0 {
		return len(p), nil
	}
	q := p
	if int64(len(q)) > l.n {
		q = q[:l.n]
	}
	n, err := l.w.Write(q)
	l.n -= int64(n)
	if err != nil {
		return n, err
	}
	return len(p), nil
}

// lineLogger re-emits each line a worker writes on stderr (its own log,
// JSON records) through the daemon's logger, so that it reaches the journal
// with its level and its attributes as fields. Lines are bounded by
// MaxLogLine; a flood is bounded by the journal's own rate limit.
type lineLogger struct {
	log *slog.Logger
	// tail appends the record's attributes to its message (see
	// Spawner.TailInMessage).
	tail    bool
	partial []byte
	// skipping: the current line was cut at MaxLogLine, its rest is dropped.
	skipping bool
}

func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !l.skipping {
			l.partial = append(l.partial, chunk...)
			if len(l.partial) > MaxLogLine {
				l.logLine(truncateLine(l.partial))
				l.partial, l.skipping = l.partial[:0], true
			}
		}
		if i < 0 {
			break
		}
		if !l.skipping {
			l.logLine(l.partial)
		}
		l.partial, l.skipping = l.partial[:0], false
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineLogger) flush() {
	if !l.skipping {
		l.logLine(l.partial)
	}
	l.partial, l.skipping = l.partial[:0], false
}

// logLine logs one line at the record's own level with its attributes.
func (l *lineLogger) logLine(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	r := ParseLine(line)
	msg := r.Message
	if l.tail {
		msg += Tail(r.Attrs)
	}
	l.log.LogAttrs(context.Background(), r.Level, msg, r.Attrs...)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
