package testenv

import (
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
)

// HostPeer stands in, on a test bus, for a system service that reports
// hardware state this test machine cannot produce: NetworkManager with a
// metered connection, UPower on battery. It owns the service's well-known
// name and exports the one property the way the service does
// (org.freedesktop.DBus.Properties, PropertiesChanged on every change), so
// the code under test reads and watches it exactly as on a real host.
type HostPeer struct {
	conn  *dbus.Conn
	props *prop.Properties
	iface string
	prop  string
}

// StartNetworkManager owns org.freedesktop.NetworkManager on the bus at
// address, with Metered (NMMetered, uint32: 1 yes, 2 no, 3 guess-yes, 4
// guess-no) at /org/freedesktop/NetworkManager.
func StartNetworkManager(t testing.TB, address string, metered uint32) *HostPeer {
	t.Helper()
	return StartHostPeer(t, address, "org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager", "Metered", metered)
}

// StartUPower owns org.freedesktop.UPower on the bus at address, with
// OnBattery at /org/freedesktop/UPower.
func StartUPower(t testing.TB, address string, onBattery bool) *HostPeer {
	t.Helper()
	return StartHostPeer(t, address, "org.freedesktop.UPower", "/org/freedesktop/UPower", "OnBattery", onBattery)
}

// StartHostPeer owns name on the bus at address and exports property on
// the interface of the same name at path, with value (whose Go type fixes
// the D-Bus type; a wrong one makes a faulty peer).
func StartHostPeer(t testing.TB, address, name string, path dbus.ObjectPath, property string, value any) *HostPeer {
	t.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		t.Fatalf("%s stand-in: %v", name, err)
	}
	props, err := prop.Export(conn, path, prop.Map{name: {property: {Value: value, Emit: prop.EmitTrue}}})
	if err != nil {
		conn.Close()
		t.Fatalf("%s stand-in: %v", name, err)
	}
	reply, err := conn.RequestName(name, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		conn.Close()
		t.Fatalf("%s stand-in: owning the name: %v (reply %v)", name, err, reply)
	}
	p := &HostPeer{conn: conn, props: props, iface: name, prop: property}
	t.Cleanup(func() { p.Stop() })
	return p
}

// Set changes the property (same type as before) and emits
// PropertiesChanged.
func (p *HostPeer) Set(value any) { p.props.SetMust(p.iface, p.prop, value) }

// Stop leaves the bus (the name goes away, as when the service stops).
func (p *HostPeer) Stop() { _ = p.conn.Close() }
