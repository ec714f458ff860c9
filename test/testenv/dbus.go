package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// DBus is a private dbus-daemon started for one test.
type DBus struct {
	// Address is the bus address (unix:path=...,guid=...).
	Address string
	// Socket is the path of the bus socket.
	Socket string
}

// StartDBus starts a private dbus-daemon whose <type> is busType ("session"
// or "system") and stops it when the test ends. Its policy lets every uid
// connect, own names and call anything, so authorization is left to the
// services on it; its socket directory is world-searchable so a test can
// call it as another uid (busctl with SysProcAttr.Credential).
func StartDBus(t testing.TB, busType string) *DBus {
	t.Helper()
	return startDBus(t, busType, openPolicy)
}

// StartSystemDBus starts a private system-type dbus-daemon with the default
// policy of Debian's system.conf (no one may own names or call methods
// unless a service file punches a hole) plus the given service policy
// files, e.g. a <busconfig> installed to /usr/share/dbus-1/system.d.
func StartSystemDBus(t testing.TB, policyFiles ...string) *DBus {
	t.Helper()
	var inc strings.Builder
	inc.WriteString(systemDefaultPolicy)
	for _, f := range policyFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&inc, "  <include>%s</include>\n", abs)
	}
	return startDBus(t, "system", inc.String())
}

func startDBus(t testing.TB, busType, policy string) *DBus {
	t.Helper()
	RequireTool(t, "dbus-daemon")
	if busType != "session" && busType != "system" {
		t.Fatalf("StartDBus: bus type %q (want session or system)", busType)
	}
	dir, err := os.MkdirTemp("", "stwg-bus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(busConfig, busType, sock, policy)), 0o644); err != nil {
		t.Fatal(err)
	}
	// --nofork keeps the bus a child of the test; Pdeathsig takes it down
	// even when the test binary dies without running its cleanups.
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--print-address=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon did not print its address: %v: %s", err, stderr.String())
	}
	b := &DBus{Address: strings.TrimSpace(addr), Socket: sock}
	return b
}

// Busctl runs busctl against this bus as root and returns its stdout.
func (b *DBus) Busctl(t testing.TB, args ...string) string {
	t.Helper()
	RequireTool(t, "busctl")
	return Run(t, nil, "busctl", append([]string{"--address=" + b.Address}, args...)...)
}

// BusctlAs runs busctl against this bus as uid:gid (no supplementary
// groups); it returns stdout and an error that includes stderr.
func (b *DBus) BusctlAs(uid, gid uint32, args ...string) (string, error) {
	return RunAs(uid, gid, "busctl", append([]string{"--address=" + b.Address}, args...)...)
}

// RunAs runs a command as uid:gid with no supplementary groups and a minimal
// environment; it returns stdout and an error that includes stderr.
func RunAs(uid, gid uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/"}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s as uid %d: %w: %s", name, uid, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>%s</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
%s</busconfig>
`

// openPolicy lets everyone do everything.
const openPolicy = `  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
`

// systemDefaultPolicy is the default policy of Debian 12's
// /usr/share/dbus-1/system.conf.
const systemDefaultPolicy = `  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
`
