package podmanapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoPodman means no podman socket answered and no podman binary could be
// started in its place.
var ErrNoPodman = errors.New("no podman API socket answers and no podman binary to start one")

// DefaultSockets are podman's own socket paths: /run/podman/podman.sock for
// root, $XDG_RUNTIME_DIR/podman/podman.sock (or /run/user/UID/...) for a user.
func DefaultSockets(system bool) []string {
	if system {
		return []string{"/run/podman/podman.sock"}
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		uid := os.Getuid()
		// Inside the rootless user namespace this process is uid 0; the
		// re-exec into it (containers/storage's unshare) records the user.
		if v, err := strconv.Atoi(os.Getenv("_CONTAINERS_ROOTLESS_UID")); err == nil {
			uid = v
		}
		dir = fmt.Sprintf("/run/user/%d", uid)
	}
	return []string{filepath.Join(dir, "podman", "podman.sock")}
}

// ConnectOptions say where to find podman's API and how to start a private
// service when none answers.
type ConnectOptions struct {
	// Sockets are tried in order; the first whose podman answers is used.
	Sockets []string
	// GraphRoot, when set, rejects a socket whose podman serves another store
	// (a private service for the right store is started instead).
	GraphRoot string
	// Podman is the binary to start; "" looks up "podman" in PATH.
	Podman string
	// NoStart forbids starting a private service.
	NoStart bool
	// PodmanArgs are global flags for the started service. Pass only store
	// settings the user chose (--root, --runroot, --storage-driver,
	// --storage-opt): podman refuses a driver its database did not record,
	// so anything else must come from podman's own configuration.
	PodmanArgs []string
	// Env is added to the started service's environment.
	Env []string
	// IdleTime is the service's --time: it exits on its own when idle this
	// long, should stowage die without stopping it. Default 60s.
	IdleTime time.Duration
	// StartTimeout bounds waiting for the started service to answer (30s).
	StartTimeout time.Duration
	// Timeout bounds each API request (DefaultTimeout).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Conn is a client connected to a podman API, possibly served by a private
// `podman system service` that Close stops.
type Conn struct {
	*Client
	// Started is true when Connect started a private service.
	Started bool
	svc     *service
}

// ServicePID is the process ID of the service Connect started, or 0.
func (c *Conn) ServicePID() int {
	if c.svc == nil {
		return 0
	}
	return c.svc.cmd.Process.Pid
}

// Close releases the client and stops a service Connect started.
func (c *Conn) Close() error {
	c.Client.Close()
	if c.svc == nil {
		return nil
	}
	return c.svc.stop()
}

// Connect returns a client for the first socket in o.Sockets that answers
// (and serves o.GraphRoot, when set); otherwise it starts `podman system
// service --time=N unix://PRIVATE` and connects to that. The error wraps
// ErrNoPodman when neither is possible.
func Connect(ctx context.Context, o ConnectOptions) (*Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var tried []string
	for _, s := range o.Sockets {
		if s == "" {
			continue
		}
		c := New(s, o.Timeout)
		why, ok := probe(ctx, c, o.GraphRoot)
		if ok {
			log.Debug("using podman API socket", "socket", s)
			return &Conn{Client: c}, nil
		}
		c.Close()
		log.Debug("podman API socket not usable", "socket", s, "reason", why)
		tried = append(tried, s+" ("+why+")")
	}
	if o.NoStart {
		return nil, fmt.Errorf("%w: tried %s", ErrNoPodman, strings.Join(tried, ", "))
	}
	bin := o.Podman
	if bin == "" {
		bin = "podman"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("%w: tried [%s]; %s: %w", ErrNoPodman, strings.Join(tried, ", "), bin, err)
	}
	svc, err := startService(ctx, path, o, log)
	if err != nil {
		return nil, err
	}
	c := New(svc.socket, o.Timeout)
	return &Conn{Client: c, Started: true, svc: svc}, nil
}

// probe reports whether podman answers on c's socket and serves graphRoot.
func probe(ctx context.Context, c *Client, graphRoot string) (string, bool) {
	if _, err := os.Stat(c.Socket()); err != nil {
		return "absent", false
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Ping(pctx); err != nil {
		return err.Error(), false
	}
	if graphRoot == "" {
		return "", true
	}
	info, err := c.Info(pctx)
	if err != nil {
		return err.Error(), false
	}
	if !samePath(info.Store.GraphRoot, graphRoot) {
		return fmt.Sprintf("serves graphroot %s, not %s", info.Store.GraphRoot, graphRoot), false
	}
	return "", true
}

func samePath(a, b string) bool {
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(b); err == nil {
		b = rb
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// service is a private `podman system service` child.
type service struct {
	cmd    *exec.Cmd
	dir    string
	socket string
	done   chan struct{} // closed when the process has exited
	stderr *lockedBuffer
	once   sync.Once
	err    error
	log    *slog.Logger
}

// childEnvDrop are variables a child must not inherit: they address the
// service manager of stowage itself, not of the child.
var childEnvDrop = []string{"NOTIFY_SOCKET=", "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "WATCHDOG_PID=", "WATCHDOG_USEC=", "INVOCATION_ID="}

// ChildEnv is this process's environment for a podman child, without the
// variables that address stowage's own service manager, plus extra.
func ChildEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		drop := false
		for _, p := range childEnvDrop {
			if strings.HasPrefix(kv, p) {
				drop = true
				break
			}
		}
		if !drop {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

func startService(ctx context.Context, bin string, o ConnectOptions, log *slog.Logger) (*service, error) {
	idle := o.IdleTime
	if idle <= 0 {
		idle = 60 * time.Second
	}
	wait := o.StartTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	// A short private directory: unix socket paths are limited to 108 bytes.
	base := os.Getenv("XDG_RUNTIME_DIR")
	if st, err := os.Stat(base); base == "" || err != nil || !st.IsDir() {
		base = ""
	}
	dir, err := os.MkdirTemp(base, "stowage-podman-")
	if err != nil {
		return nil, fmt.Errorf("starting podman service: %w", err)
	}
	sock := filepath.Join(dir, "podman.sock")
	args := append(append([]string{}, o.PodmanArgs...), "system", "service",
		fmt.Sprintf("--time=%d", int(idle.Round(time.Second)/time.Second)), "unix://"+sock)
	cmd := exec.Command(bin, args...)
	cmd.Env = ChildEnv(o.Env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not hit by a terminal's ^C
	s := &service{cmd: cmd, dir: dir, socket: sock, done: make(chan struct{}), stderr: &lockedBuffer{}, log: log}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s system service: %w", bin, err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	log.Info("started a private podman API service", "pid", cmd.Process.Pid, "socket", sock, "idle_exit", idle)

	c := New(sock, 5*time.Second)
	defer c.Close()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); err == nil {
			if _, err := c.Ping(ctx); err == nil {
				log.Debug("podman API service answers", "socket", sock)
				return s, nil
			}
		}
		select {
		case <-s.done:
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("podman system service exited at start: %s", strings.TrimSpace(s.stderr.String()))
		case <-ctx.Done():
			_ = s.stop()
			return nil, fmt.Errorf("waiting for podman system service: %w", ctx.Err())
		case <-deadline.C:
			_ = s.stop()
			return nil, fmt.Errorf("podman system service did not answer on %s within %s: %s", sock, wait, strings.TrimSpace(s.stderr.String()))
		case <-tick.C:
		}
	}
}

// stop ends the service (SIGTERM, then SIGKILL after 10s) and removes its
// directory. It is idempotent.
func (s *service) stop() error {
	s.once.Do(func() {
		select {
		case <-s.done:
		default:
			s.log.Debug("stopping the private podman API service", "pid", s.cmd.Process.Pid)
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(10 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		s.log.Debug("stopped the private podman API service", "pid", s.cmd.Process.Pid)
		if err := os.RemoveAll(s.dir); err != nil {
			s.err = fmt.Errorf("removing %s: %w", s.dir, err)
		}
	})
	return s.err
}

// lockedBuffer collects a child's stderr (bounded) for error messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
