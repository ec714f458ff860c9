package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// PolkitBusPolicy is the bus policy that lets polkitd own its name on a
// StartSystemDBus bus.
const PolkitBusPolicy = "/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf"

const polkitd = "/usr/lib/polkit-1/polkitd"

// Polkit is a real polkitd serving a private system bus.
type Polkit struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

// StartPolkit runs the real polkitd on bus, seeing only the given action
// files and JavaScript rules: it runs in a private mount namespace where a
// temp dir is bind-mounted over /usr/share/polkit-1/actions and another over
// /etc/polkit-1/rules.d, so the host's polkit setup is untouched. It returns
// once polkitd owns org.freedesktop.PolicyKit1; Stop (or the test's end)
// kills it.
func StartPolkit(t testing.TB, bus *DBus, actionFiles []string, rules string) *Polkit {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "unshare", "mount", "busctl")
	if _, err := os.Stat(polkitd); err != nil {
		t.Fatalf("polkitd not installed (apt-get install polkitd): %v", err)
	}
	dir, err := os.MkdirTemp("", "stwg-polkit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	actions, rulesDir := filepath.Join(dir, "actions"), filepath.Join(dir, "rules.d")
	for _, d := range []string{actions, rulesDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range actionFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(actions, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "50-test.rules"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s /usr/share/polkit-1/actions && mount --bind %s /etc/polkit-1/rules.d && exec %s",
		actions, rulesDir, polkitd)
	p := &Polkit{done: make(chan struct{})}
	p.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DBUS_SYSTEM_BUS_ADDRESS=" + bus.Address}
	w := &lockedBuffer{p: p}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.Stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := RunErr(nil, "busctl", "--address="+bus.Address, "status", "org.freedesktop.PolicyKit1")
		if strings.Contains(out, "PID=") {
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("polkitd exited:\n%s", p.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("polkitd did not take its bus name within 15s:\n%s", p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills polkitd and waits for it.
func (p *Polkit) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Log is polkitd's output so far.
func (p *Polkit) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

type lockedBuffer struct{ p *Polkit }

func (w *lockedBuffer) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.log.Write(b)
}
