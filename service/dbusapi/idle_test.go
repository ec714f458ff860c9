package dbusapi

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/test/testenv"
)

// TestIdleCountsEveryCall: each method, property read and introspection
// on the object marks the server active; errors count too.
func TestIdleCountsEveryCall(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	srv, _ := startServer(t, bus, false)
	obj := clientConn(t, bus).Object(BusName, ObjectPath)
	if !srv.Idle(time.Hour) {
		t.Fatal("idle is false before any call")
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"ListJobs", func() error { return obj.Call(Interface+".ListJobs", 0).Err }},
		{"RunJob", func() error { return obj.Call(Interface+".RunJob", 0, "prune", true).Err }},
		{"RunJob(unknown)", func() error { obj.Call(Interface+".RunJob", 0, "nope", true); return nil }},
		{"RecentRuns", func() error { return obj.Call(Interface+".RecentRuns", 0, uint64(0)).Err }},
		{"PullImage", func() error { return obj.Call(Interface+".PullImage", 0, "localhost/app:1").Err }},
		{"GetReport", func() error { return obj.Call(Interface+".GetReport", 0, "run-1").Err }},
		{"Reload", func() error { obj.Call(Interface+".Reload", 0); return nil }},
		{"Pin", func() error { return obj.Call(Interface+".Pin", 0, "docker.io/library/alpine:3").Err }},
		{"Unpin", func() error { return obj.Call(Interface+".Unpin", 0, "docker.io/library/alpine:3").Err }},
		{"Get", func() error { _, err := obj.GetProperty(Interface + ".State"); return err }},
		{"GetAll", func() error {
			return obj.Call("org.freedesktop.DBus.Properties.GetAll", 0, Interface).Err
		}},
		{"Introspect", func() error { return obj.Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Err }},
	}
	for _, c := range calls {
		srv.lastCall.Store(0) // as if nothing was ever called
		if !srv.Idle(time.Hour) {
			t.Fatalf("%s: idle is false after reset", c.name)
		}
		if err := c.call(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if srv.Idle(time.Hour) {
			t.Errorf("%s did not count as activity", c.name)
		}
	}
}

// blockingBackend holds Reload until released.
type blockingBackend struct {
	*testBackend
	entered, release chan struct{}
}

func (b blockingBackend) Reload(ctx context.Context) error {
	close(b.entered)
	<-b.release
	return nil
}

// TestIdleCallInProgress: a call still being served keeps the server
// active however long it takes.
func TestIdleCallInProgress(t *testing.T) {
	bus := testenv.StartDBus(t, "session")
	conn, err := ConnectAddress(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	be := blockingBackend{&testBackend{}, make(chan struct{}), make(chan struct{})}
	srv, err := Export(Options{Conn: conn, Backend: be, Status: Status{Version: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	obj := clientConn(t, bus).Object(BusName, ObjectPath)
	done := make(chan *dbus.Call, 1)
	obj.Go(Interface+".Reload", 0, done)
	select {
	case <-be.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("Reload did not reach the backend")
	}
	if srv.Idle(0) {
		t.Error("idle while a call is in progress")
	}
	close(be.release)
	select {
	case c := <-done:
		if c.Err != nil {
			t.Fatalf("Reload: %v", c.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Reload reply")
	}
	if !srv.Idle(0) || srv.Idle(time.Hour) {
		t.Errorf("after the call: Idle(0) = %v (want true), Idle(1h) = %v (want false)", srv.Idle(0), srv.Idle(time.Hour))
	}
}
