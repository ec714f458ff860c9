package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/test/testenv"
)

// TestPullActionPullsTheImage: the real daemon and worker binaries against
// a real store and registry. A refresh in notify mode finds b drifted and
// its notification offers "Pull update"; a then drifts too; invoking the
// action through the notification server pulls b alone (old image kept)
// and leaves a where it was.
func TestPullActionPullsTheImage(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman", "docker-registry")
	bin := testenv.Stowage(t)
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	builder, host := testenv.NewPodman(t, "vfs"), testenv.NewPodman(t, "vfs")
	regConf := filepath.Join(host.Dir(), "registries.conf")
	if err := os.WriteFile(regConf, fmt.Appendf(nil, "unqualified-search-registries = []\n[[registry]]\nlocation = %q\ninsecure = true\n", reg.Addr), 0o644); err != nil {
		t.Fatal(err)
	}
	push := func(repoTag string, n int) {
		local := fmt.Sprintf("localhost/src%d:latest", n)
		builder.Import(t, local, map[string]string{"content": fmt.Sprintf("%s %d %d", repoTag, n, time.Now().UnixNano())})
		builder.Run(t, "push", "-q", "--tls-verify=false", local, "docker://"+reg.Addr+"/"+repoTag)
	}
	a, b := reg.Addr+"/app/a:1", reg.Addr+"/app/b:1"
	push("app/a:1", 1)
	push("app/b:1", 2)
	host.Run(t, "pull", "-q", a)
	host.Run(t, "pull", "-q", b)
	inspect := func(ref string) string { return host.Run(t, "image", "inspect", "--format", "{{.Id}}", ref) }
	oldA, oldB := inspect(a), inspect(b)
	push("app/b:1", 3)

	bus := testenv.StartDBus(t, "session")
	srv := startActionServer(t, bus)
	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	writePolicy(t, pol, "version = 1\n[schedule]\njitter = \"0\"\nrefresh = \"@weekly\"\n[refresh]\nmode = \"notify\"\n[notify]\nmin_urgency = \"normal\"\n")
	sock := filepath.Join(dir, "ctl.sock")
	cmd := exec.Command(bin, append(append([]string{"--user", "--state-dir", filepath.Join(dir, "state")}, host.Flags()...),
		"--policy", pol, "daemon", "--socket", sock)...)
	cmd.Env = append(append(os.Environ(), host.Env...), "DBUS_SESSION_BUS_ADDRESS="+bus.Address, "XDG_RUNTIME_DIR="+dir)
	stderr := &lockedBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		t.Logf("daemon stderr:\n%s", stderr.String())
	})
	c := client.New(sock, nil)
	t.Cleanup(func() { c.Close() })
	ctx := t.Context()
	waitFor(t, "daemon up", func() bool { _, err := c.Status(ctx); return err == nil })

	r, err := c.Trigger(ctx, "refresh", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = c.Wait(ctx, r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("refresh: %+v %v", r, err)
	}
	var id uint32
	waitFor(t, "a notification offering pull", func() bool { id = srv.offering("pull"); return id != 0 })
	srv.mu.Lock()
	acts := srv.actions[id]
	srv.mu.Unlock()
	if want := []string{"pull", "Pull update", "report", "Show report", "snooze", "Don't remind me"}; !slices.Equal(acts, want) {
		t.Fatalf("actions %q, want %q", acts, want)
	}
	push("app/a:1", 4) // a drifts now: the pull must leave it alone
	srv.emit(t, "ActionInvoked", id, "pull")

	var pull *api.Run
	waitFor(t, "the pull run", func() bool {
		h, err := c.History(ctx, "refresh", 10)
		if err != nil {
			return false
		}
		for _, r := range h {
			if len(r.Args) > 0 && r.Outcome.Done() {
				pull = r
				return true
			}
		}
		return false
	})
	if pull.Outcome != api.OutcomeSucceeded || !slices.Equal(pull.Args, []string{"--pull=" + b}) {
		t.Fatalf("pull run %+v, want refresh --pull %s", pull, b)
	}
	if got := inspect(b); got == oldB {
		t.Errorf("%s not pulled (still %s)", b, got)
	}
	host.Run(t, "image", "inspect", oldB) // the old image is kept
	if got := inspect(a); got != oldA {
		t.Errorf("%s was pulled too: %s, want %s", a, got, oldA)
	}
	if !strings.Contains(pull.Summary, "1 references checked") && !strings.Contains(pull.Summary, "1 reference") {
		t.Errorf("pull run summary %q", pull.Summary)
	}
}

// lockedBuf is a goroutine-safe strings.Builder.
type lockedBuf struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *lockedBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *lockedBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
