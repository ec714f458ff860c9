package hoststate_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/service/hoststate"
	"github.com/stowage/stowage/test/testenv"
)

// syncBuffer is a log sink written by the watcher's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func open(t *testing.T, bus *testenv.DBus) (*hoststate.Watcher, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	w, err := hoststate.Open(bus.Address, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w, &logs
}

// waitState waits for the watcher to report want after a Changed signal.
func waitState(t *testing.T, w *hoststate.Watcher, want hoststate.State, what string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for w.State() != want {
		select {
		case <-w.Changed():
		case <-deadline:
			t.Fatalf("%s: state %+v, want %+v", what, w.State(), want)
		}
	}
}

// TestAbsentServicesAreNotCostly: a bus without NetworkManager and UPower
// (a server, a container) reads as unmetered on mains power, and that is
// no error worth a log line.
func TestAbsentServicesAreNotCostly(t *testing.T) {
	bus := testenv.StartDBus(t, "system")
	w, logs := open(t, bus)
	if s := w.State(); s != (hoststate.State{}) {
		t.Fatalf("state %+v, want zero", s)
	}
	if l := logs.String(); l != "" {
		t.Fatalf("logged without the services: %s", l)
	}
	// NetworkManager starting: it owns its name a moment before its object
	// exists, and GDBus answers UnknownMethod (seen with NetworkManager 1.42
	// on Debian 12). Not there yet, no error.
	startingNetworkManager(t, bus)
	testenv.StartUPower(t, bus.Address, true)
	waitState(t, w, hoststate.State{OnBattery: true}, "UPower up, NetworkManager half up")
	if l := logs.String(); strings.Contains(l, "level=WARN") {
		t.Fatalf("a service without its object yet is no error: %s", l)
	}
}

// starting answers Properties.Get as NetworkManager does between owning
// its name and exporting its object.
type starting struct{}

func (starting) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	return dbus.Variant{}, &dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod", Body: []any{"Object does not exist at path “/org/freedesktop/NetworkManager”"}}
}

func startingNetworkManager(t *testing.T, bus *testenv.DBus) {
	t.Helper()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Export(starting{}, hoststate.NetworkManagerPath, "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(hoststate.NetworkManagerName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s: %v %v", hoststate.NetworkManagerName, r, err)
	}
}

// TestMeteredValues: NM_METERED_YES and GUESS_YES count as metered,
// UNKNOWN, NO and GUESS_NO do not — read at start and followed through
// PropertiesChanged.
func TestMeteredValues(t *testing.T) {
	bus := testenv.StartDBus(t, "system")
	nm := testenv.StartNetworkManager(t, bus.Address, 1)
	w, _ := open(t, bus)
	if !w.State().Metered {
		t.Fatal("NM_METERED_YES at start: not metered")
	}
	for _, tc := range []struct {
		v    uint32
		want bool
	}{{2, false}, {3, true}, {4, false}, {1, true}, {0, false}} {
		nm.Set(tc.v)
		waitState(t, w, hoststate.State{Metered: tc.want}, "Metered changed")
	}
}

// TestBatteryAndServiceComings: UPower's OnBattery is followed; a service
// that leaves the bus reads as not costly again, one that appears later is
// read at once (NameOwnerChanged).
func TestBatteryAndServiceComings(t *testing.T) {
	bus := testenv.StartDBus(t, "system")
	up := testenv.StartUPower(t, bus.Address, true)
	w, logs := open(t, bus)
	waitState(t, w, hoststate.State{OnBattery: true}, "on battery at start")
	up.Set(false)
	waitState(t, w, hoststate.State{}, "mains power")
	up.Set(true)
	waitState(t, w, hoststate.State{OnBattery: true}, "battery again")
	up.Stop()
	waitState(t, w, hoststate.State{}, "UPower left the bus")

	nm := testenv.StartNetworkManager(t, bus.Address, 3)
	waitState(t, w, hoststate.State{Metered: true}, "NetworkManager appeared")
	nm.Stop()
	waitState(t, w, hoststate.State{}, "NetworkManager left the bus")
	if l := logs.String(); strings.Contains(l, "level=WARN") {
		t.Fatalf("services coming and going are no errors: %s", l)
	}
}

// TestBadValueLoggedOnce: a peer answering with the wrong type (a fault the
// real services do not produce, made here by a stand-in) reads as not
// costly and is logged once, however often it is read again.
func TestBadValueLoggedOnce(t *testing.T) {
	bus := testenv.StartDBus(t, "system")
	// A string where NetworkManager sends a uint32.
	bad := testenv.StartHostPeer(t, bus.Address, hoststate.NetworkManagerName, hoststate.NetworkManagerPath, hoststate.MeteredProperty, "yes")
	up := testenv.StartUPower(t, bus.Address, true)
	w, logs := open(t, bus)
	waitState(t, w, hoststate.State{OnBattery: true}, "start")
	up.Set(false)
	waitState(t, w, hoststate.State{}, "bad Metered, mains power")
	up.Set(true)
	waitState(t, w, hoststate.State{OnBattery: true}, "battery, Metered still bad")
	up.Set(false)
	waitState(t, w, hoststate.State{}, "mains power, Metered still bad")
	if n := strings.Count(logs.String(), "cannot read host condition"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "Metered is of type s, not u") {
		t.Fatalf("log does not say what is wrong:\n%s", logs.String())
	}
	bad.Stop()
	testenv.StartNetworkManager(t, bus.Address, 1)
	waitState(t, w, hoststate.State{Metered: true}, "a proper NetworkManager")
}

// TestNoBus: no system bus at all is an error for the caller to log once;
// it does not hang.
func TestNoBus(t *testing.T) {
	_, err := hoststate.Open("unix:path="+t.TempDir()+"/none", nil)
	if err == nil {
		t.Fatal("opened a bus that does not exist")
	}
}
