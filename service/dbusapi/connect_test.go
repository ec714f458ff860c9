package dbusapi

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/test/testenv"
)

// spyAutolaunch prepares an environment without a session bus address and
// with XDG_RUNTIME_DIR set to a fresh directory (returned). A dbus-launch
// first in PATH records that it was run and then runs the real one (if
// any); the returned check fails the test if dbus-launch ran or if any
// process inheriting this test's marker variable (a dbus-launch or
// dbus-daemon started from here) is alive.
func spyAutolaunch(t *testing.T) (runtimeDir string, check func()) {
	t.Helper()
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "")
	os.Unsetenv("DBUS_SESSION_BUS_ADDRESS")
	runtimeDir = t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	mark := fmt.Sprintf("%s-%d-%d", t.Name(), os.Getpid(), time.Now().UnixNano())
	t.Setenv("STWG_DBUSAPI_MARK", mark)

	bin := t.TempDir()
	ran := filepath.Join(t.TempDir(), "dbus-launch.ran")
	script := fmt.Sprintf("#!/bin/sh\necho \"$*\" >> %q\nreal=$(PATH=%q command -v dbus-launch) && exec \"$real\" \"$@\"\nexit 1\n",
		ran, os.Getenv("PATH"))
	if err := os.WriteFile(filepath.Join(bin, "dbus-launch"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	return runtimeDir, func() {
		t.Helper()
		if out, err := os.ReadFile(ran); err == nil {
			t.Errorf("dbus-launch was run (%s)", bytes.TrimSpace(out))
		}
		for _, pid := range markedProcesses(t, "STWG_DBUSAPI_MARK="+mark) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			t.Errorf("process %d (%s) was started", pid, bytes.TrimSpace(comm))
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// markedProcesses lists the other processes whose environment holds kv.
func markedProcesses(t *testing.T, kv string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, v := range bytes.Split(env, []byte{0}) {
			if string(v) == kv {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestConnectSessionNeverAutolaunches: without DBUS_SESSION_BUS_ADDRESS
// and without $XDG_RUNTIME_DIR/bus, Connect(false) reports ErrNoBus and
// starts nothing; "autolaunch:" is no address either.
func TestConnectSessionNeverAutolaunches(t *testing.T) {
	dir, check := spyAutolaunch(t)
	// Not a socket: still no bus.
	if err := os.WriteFile(filepath.Join(dir, "bus"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"", "autolaunch:"} {
		if addr != "" {
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", addr)
		}
		c, err := Connect(false)
		if err == nil {
			c.Close()
			t.Fatalf("Connect(false) with address %q succeeded without a bus", addr)
		}
		if !errors.Is(err, ErrNoBus) {
			t.Errorf("Connect(false) with address %q: %v does not wrap ErrNoBus", addr, err)
		}
	}
	os.Unsetenv("DBUS_SESSION_BUS_ADDRESS")
	if err := os.Remove(filepath.Join(dir, "bus")); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(false); !errors.Is(err, ErrNoBus) {
		t.Errorf("Connect(false) without $XDG_RUNTIME_DIR/bus: %v, want ErrNoBus", err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	if _, err := Connect(false); !errors.Is(err, ErrNoBus) {
		t.Errorf("Connect(false) without XDG_RUNTIME_DIR: %v, want ErrNoBus", err)
	}
	check()
}

// TestConnectSessionRuntimeDirBus: without DBUS_SESSION_BUS_ADDRESS,
// Connect(false) uses the bus socket at $XDG_RUNTIME_DIR/bus.
func TestConnectSessionRuntimeDirBus(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	dir, check := spyAutolaunch(t)
	// systemd --user's bus socket is $XDG_RUNTIME_DIR/bus; here it leads to
	// the private bus.
	if err := os.Symlink(bus.Socket, filepath.Join(dir, "bus")); err != nil {
		t.Fatal(err)
	}
	conn, err := Connect(false)
	if err != nil {
		t.Fatalf("Connect(false) with $XDG_RUNTIME_DIR/bus: %v", err)
	}
	defer conn.Close()
	srv, err := Export(Options{Conn: conn, Backend: &testBackend{}, Status: Status{Version: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// The name is owned on the private bus, so that is the bus we reached.
	var has bool
	if err := clientConn(t, bus).BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has); err != nil || !has {
		t.Fatalf("NameHasOwner(%s) on the private bus = %v, %v", BusName, has, err)
	}
	check()
}
