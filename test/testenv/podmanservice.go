package testenv

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PodmanService is a real `podman system service` serving one test store's
// libpod REST API on a private unix socket.
type PodmanService struct {
	Socket string // path of the API socket
	cmd    *exec.Cmd
	done   chan struct{}
}

// StartPodmanService starts `podman system service --time=0 unix://SOCKET`
// over p's store (its Env and Flags) and waits until the API answers. It is
// stopped when the test ends.
func (p *Podman) StartPodmanService(t testing.TB) *PodmanService {
	t.Helper()
	RequireTool(t, "podman")
	// Short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "stwg-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &PodmanService{Socket: filepath.Join(dir, "podman.sock"), done: make(chan struct{})}
	logf, err := os.Create(filepath.Join(p.dir, "podman-service.log"))
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command("podman", append(p.Flags(), "system", "service", "--time=0", "unix://"+s.Socket)...)
	s.cmd.Env = append(os.Environ(), p.Env...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); _ = logf.Close(); close(s.done) }()
	t.Cleanup(s.Stop)

	deadline := time.Now().Add(30 * time.Second)
	for !s.answers() {
		select {
		case <-s.done:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("podman system service exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("podman system service did not answer on %s: %s", s.Socket, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// answers reports whether the API answers a ping.
func (s *PodmanService) answers() bool {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", s.Socket)
		},
	}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://d/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop terminates the service (SIGTERM, SIGKILL after 10s); it is idempotent.
func (s *PodmanService) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// IsolateEngine gives p's podman a private tmp_dir and file locks. Without
// them every test store shares /run/libpod (which `podman system reset` in
// another test's cleanup deletes, making podman "refresh" as after a reboot)
// and the /dev/shm/libpod_lock segment (whose refresh frees other stores'
// locks). Call it right after NewPodman, before any podman command.
// (NewPodman should write these two settings itself; then this is a no-op.)
func (p *Podman) IsolateEngine(t testing.TB) {
	t.Helper()
	conf := filepath.Join(p.dir, "containers.conf")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	if strings.Contains(s, "tmp_dir") {
		return
	}
	tmp := filepath.Join(p.dir, "libpod-tmp")
	s = strings.Replace(s, "[engine]\n", "[engine]\ntmp_dir = \""+tmp+"\"\nlock_type = \"file\"\n", 1)
	if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
