package lastuse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
)

// DefaultCLITimeout bounds one `podman events` run when PodmanCLI has no
// Timeout.
const DefaultCLITimeout = 2 * time.Minute

// PodmanCLI reads container create/start events with the host's own podman
// command, `podman events --stream=false`: the source when no podman API
// socket answers (a default install has podman.socket disabled). podman
// reads its own event log, whichever backend containers.conf names (a file
// in podman 4.3, journald under systemd in podman 5).
type PodmanCLI struct {
	// Bin is the podman binary; "" looks up "podman" in PATH.
	Bin string
	// Args are global flags put before "events". Pass only the store
	// settings the user chose (--root, --runroot, --storage-driver,
	// --storage-opt): podman takes everything else from its own
	// configuration, and refuses a driver its database did not record.
	Args []string
	// Env is added to podman's environment.
	Env []string
	// Timeout bounds the run (DefaultCLITimeout when <= 0).
	Timeout time.Duration
}

var _ EventSource = PodmanCLI{}

// ContainerUses implements EventSource. Inside the rootless user namespace
// stowage's re-exec sets _CONTAINERS_USERNS_CONFIGURED, which podman
// honours: it stays in that namespace and reads the user's events.
func (p PodmanCLI) ContainerUses(ctx context.Context, since, until time.Time) ([]Use, error) {
	out, err := p.events(ctx, since)
	if err != nil {
		return nil, err
	}
	return parseCLIEvents(out, until)
}

// cliArgs is the podman command line for the container create and start
// events since a time. As with the API, no --until: podman 4's file logger
// stops reading as soon as a past "until" is reached, so the caller reads
// to the end and cuts the window itself. since is rounded down to whole
// seconds (re-reading an event is harmless).
func cliArgs(global []string, since time.Time) []string {
	args := append([]string{}, global...)
	args = append(args, "events", "--stream=false", "--format", "json",
		"--filter", "type=container", "--filter", "event=create", "--filter", "event=start")
	if !since.IsZero() {
		args = append(args, "--since", since.Truncate(time.Second).UTC().Format(time.RFC3339))
	}
	return args
}

// events runs podman and returns its standard output.
func (p PodmanCLI) events(ctx context.Context, since time.Time) ([]byte, error) {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultCLITimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bin := p.Bin
	if bin == "" {
		bin = "podman"
	}
	cmd := exec.CommandContext(ctx, bin, cliArgs(p.Args, since)...)
	cmd.Env = podmanapi.ChildEnv(p.Env)
	// Its own process group, killed as a whole on timeout: a rootless
	// podman may re-exec itself into a user namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s events: no answer within %s: %w", bin, timeout, ctx.Err())
		}
		return nil, fmt.Errorf("%s events: %w: %s", bin, err, lastLines(stderr.String(), 5))
	}
	return stdout.Bytes(), nil
}

// lastLines returns at most n trailing lines of s, trimmed.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// parseCLIEvents parses the output of `podman events --format json`, one
// JSON object per line, into uses at or before until (zero: no bound).
// Any line it cannot read fails the whole scan: the cursor then stays and
// the next scan retries, rather than skipping uses it did not understand.
func parseCLIEvents(out []byte, until time.Time) ([]Use, error) {
	var uses []Use
	for i, line := range bytes.Split(out, []byte("\n")) {
		u, ok, err := parseCLIEventLine(line)
		if err != nil {
			return nil, fmt.Errorf("podman events output line %d: %w", i+1, err)
		}
		if !ok || (!until.IsZero() && u.At.After(until)) {
			continue
		}
		uses = append(uses, u)
	}
	return uses, nil
}

// cliEvent is the part of one `podman events --format json` line stowage
// reads. podman 4 writes "Time" as an RFC 3339 string; podman 5 writes
// "time" in Unix seconds and "timeNano" in nanoseconds (JSON field names
// match case-insensitively, so Time takes either).
type cliEvent struct {
	Type     string
	Status   string
	Image    string
	Time     json.RawMessage
	TimeNano int64 `json:"timeNano"`
}

// errNoTime is returned for an event without a readable time.
var errNoTime = errors.New("event has no time")

// parseCLIEventLine parses one line. ok is false for a blank line and for
// an event that is not a container create or start naming an image.
func parseCLIEventLine(line []byte) (Use, bool, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return Use{}, false, nil
	}
	var e cliEvent
	if err := json.Unmarshal(line, &e); err != nil {
		return Use{}, false, err
	}
	if e.Type != "container" || (e.Status != "create" && e.Status != "start") || e.Image == "" {
		return Use{}, false, nil
	}
	at, err := e.when()
	if err != nil {
		return Use{}, false, err
	}
	return Use{Name: e.Image, At: at}, true, nil
}

// when is the event's time, preferring the most precise field.
func (e cliEvent) when() (time.Time, error) {
	if e.TimeNano > 0 {
		return time.Unix(0, e.TimeNano), nil
	}
	raw := bytes.TrimSpace(e.Time)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return time.Time{}, errNoTime
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("event time: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("event time: %w", err)
		}
		if t.IsZero() {
			return time.Time{}, errNoTime
		}
		return t, nil
	}
	var sec int64
	if err := json.Unmarshal(raw, &sec); err != nil {
		return time.Time{}, fmt.Errorf("event time: %w", err)
	}
	if sec <= 0 {
		return time.Time{}, errNoTime
	}
	return time.Unix(sec, 0), nil
}
