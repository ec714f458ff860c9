package daemon

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/test/testenv"
)

// TestIdleExitCountsDBusCalls runs the real binary with --idle-exit and no
// DBUS_SESSION_BUS_ADDRESS: it finds the private session bus at
// $XDG_RUNTIME_DIR/bus, D-Bus calls (methods and property reads) keep it
// running well past the idle window, and once they stop it exits.
func TestIdleExitCountsDBusCalls(t *testing.T) {
	bin := testenv.Stowage(t)
	bus := testenv.StartDBus(t, "session")
	dir := t.TempDir()
	runtime := filepath.Join(dir, "run")
	if err := os.Mkdir(runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	// Where systemd --user keeps the session bus socket.
	if err := os.Symlink(bus.Socket, filepath.Join(runtime, "bus")); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "stowage.toml")
	writePolicy(t, pol, "version = 1\n[schedule]\njitter = \"0\"\nprune = \"@weekly\"\n")

	const window = 2 * time.Second
	cmd := exec.Command(bin, "--user", "--state-dir", filepath.Join(dir, "state"), "--policy", pol,
		"daemon", "--idle-exit", window.String())
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "XDG_RUNTIME_DIR="+runtime)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		exited <- <-exited
		t.Logf("daemon stderr:\n%s", stderr.String())
	})

	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "the daemon's bus name", func() bool {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, dbusapi.BusName).Store(&has)
		return err == nil && has
	})
	obj := conn.Object(dbusapi.BusName, dbusapi.ObjectPath)
	m := dbusapi.Interface + "."
	calls := []struct {
		call    func() *dbus.Call
		mayFail bool // the daemon answers with an error: still a call
	}{
		{func() *dbus.Call { return obj.Call(m+"ListJobs", 0) }, false},
		{func() *dbus.Call { return obj.Call(m+"GetReport", 0, "20990101T000000.000Z-prune-0000") }, true},
		{func() *dbus.Call {
			return obj.Call("org.freedesktop.DBus.Properties.Get", 0, dbusapi.Interface, "State")
		}, false},
		{func() *dbus.Call { return obj.Call("org.freedesktop.DBus.Properties.GetAll", 0, dbusapi.Interface) }, false},
		{func() *dbus.Call { return obj.Call(m+"Pin", 0, "localhost/stwg-idlebus/keep:1") }, false},
		{func() *dbus.Call { return obj.Call(m+"Unpin", 0, "localhost/stwg-idlebus/keep:1") }, false},
		{func() *dbus.Call { return obj.Call(m+"Reload", 0) }, false},
		{func() *dbus.Call { return obj.Call(m+"RunJob", 0, "nope", false) }, true}, // no run starts
	}
	// Three idle windows of D-Bus use only (no control-socket client, no
	// run): the daemon must stay.
	until := time.Now().Add(3 * window)
	for i := 0; time.Now().Before(until); i++ {
		c := calls[i%len(calls)]
		call := c.call()
		if call.Err != nil && !c.mayFail {
			select {
			case err := <-exited:
				exited <- err
				t.Fatalf("daemon exited while used over D-Bus (call %d, %s): %v", i, call.Method, err)
			case <-time.After(time.Second):
			}
			t.Fatalf("%s: %v", call.Method, call.Err)
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("daemon exited while used over D-Bus (call %d, %s): %v", i, call.Method, err)
		case <-time.After(window / 5):
		}
	}

	// No more calls: the daemon exits by itself, cleanly.
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("daemon: %v", err)
		}
	case <-time.After(10 * window):
		t.Fatal("daemon did not exit when D-Bus calls stopped")
	}
}
