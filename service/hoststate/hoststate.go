// Package hoststate reads, and watches, the host conditions that make work
// costly from the system bus: NetworkManager's Metered property (a metered
// connection) and UPower's OnBattery. A service that is not on the bus
// means "not metered" and "on mains power"; any other bus error is logged
// once (until a read succeeds again) and reads as the same.
package hoststate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// The peers and properties read.
const (
	NetworkManagerName  = "org.freedesktop.NetworkManager"
	NetworkManagerPath  = "/org/freedesktop/NetworkManager"
	NetworkManagerIface = "org.freedesktop.NetworkManager"
	MeteredProperty     = "Metered"

	UPowerName        = "org.freedesktop.UPower"
	UPowerPath        = "/org/freedesktop/UPower"
	UPowerIface       = "org.freedesktop.UPower"
	OnBatteryProperty = "OnBattery"
)

// NetworkManager's NMMetered values (a uint32) that count as metered:
// NM_METERED_YES and NM_METERED_GUESS_YES. UNKNOWN (0), NO (2) and
// GUESS_NO (4) do not.
const (
	meteredYes      = 1
	meteredGuessYes = 3
)

// readTimeout bounds one property read: a hung peer must not stall a run.
const readTimeout = 5 * time.Second

// State is the host's condition.
type State struct {
	Metered   bool
	OnBattery bool
}

// Watcher keeps the current State up to date from the bus signals.
type Watcher struct {
	conn    *dbus.Conn
	log     *slog.Logger
	signals chan *dbus.Signal
	changed chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup

	mu    sync.Mutex
	state State
	// failing holds the sources whose last read failed (logged once).
	failing map[string]bool
}

// Open connects to the system bus at address ("" = the standard system bus:
// $DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket), reads the
// current state and watches for changes until Close.
func Open(address string, log *slog.Logger) (*Watcher, error) {
	var conn *dbus.Conn
	var err error
	if address == "" {
		conn, err = dbus.ConnectSystemBus()
	} else {
		conn, err = dbus.Connect(address)
	}
	if err != nil {
		return nil, fmt.Errorf("system bus: %w", err)
	}
	w, err := Watch(conn, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return w, nil
}

// Watch is Open on an open connection, which Close then closes.
func Watch(conn *dbus.Conn, log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		conn: conn, log: log, signals: make(chan *dbus.Signal, 16),
		changed: make(chan struct{}, 1), done: make(chan struct{}), failing: map[string]bool{},
	}
	// Subscribe before the first read, so no change falls between them.
	matches := [][]dbus.MatchOption{
		{dbus.WithMatchObjectPath(NetworkManagerPath), dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")},
		{dbus.WithMatchObjectPath(UPowerPath), dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")},
		// A service starting or going away changes its answer.
		{dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, NetworkManagerName)},
		{dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, UPowerName)},
	}
	for _, m := range matches {
		if err := conn.AddMatchSignal(m...); err != nil {
			return nil, fmt.Errorf("subscribing to %s and %s signals: %w", NetworkManagerName, UPowerName, err)
		}
	}
	conn.Signal(w.signals)
	w.state = w.read()
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// State is the current state.
func (w *Watcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

// Changed receives a value after the state changed (one pending at most;
// read State for the current one).
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Close stops watching and closes the connection.
func (w *Watcher) Close() error {
	close(w.done)
	err := w.conn.Close()
	w.wg.Wait()
	return err
}

func (w *Watcher) loop() {
	defer w.wg.Done()
	for {
		select {
		case <-w.done:
			return
		case sig, ok := <-w.signals:
			if !ok {
				return
			}
			if !w.relevant(sig) {
				continue
			}
			s := w.read()
			w.mu.Lock()
			old := w.state
			w.state = s
			w.mu.Unlock()
			if s != old {
				w.log.Info("host conditions changed", "metered", s.Metered, "on_battery", s.OnBattery)
				select {
				case w.changed <- struct{}{}:
				default:
				}
			}
		}
	}
}

// relevant filters the connection's signals: the match rules narrow what
// the bus sends, but the channel also gets whatever else the connection
// receives.
func (w *Watcher) relevant(sig *dbus.Signal) bool {
	switch sig.Name {
	case "org.freedesktop.DBus.Properties.PropertiesChanged":
		return sig.Path == NetworkManagerPath || sig.Path == UPowerPath
	case "org.freedesktop.DBus.NameOwnerChanged":
		if len(sig.Body) > 0 {
			name, _ := sig.Body[0].(string)
			return name == NetworkManagerName || name == UPowerName
		}
	}
	return false
}

// read asks both services for their property now.
func (w *Watcher) read() State {
	return State{
		Metered: w.readOne(NetworkManagerName, NetworkManagerPath, NetworkManagerIface, MeteredProperty, func(v dbus.Variant) (bool, error) {
			m, ok := v.Value().(uint32)
			if !ok {
				return false, fmt.Errorf("%s is of type %s, not u", MeteredProperty, v.Signature())
			}
			return m == meteredYes || m == meteredGuessYes, nil
		}),
		OnBattery: w.readOne(UPowerName, UPowerPath, UPowerIface, OnBatteryProperty, func(v dbus.Variant) (bool, error) {
			b, ok := v.Value().(bool)
			if !ok {
				return false, fmt.Errorf("%s is of type %s, not b", OnBatteryProperty, v.Signature())
			}
			return b, nil
		}),
	}
}

// errAbsent: the service is not on the bus (not installed, not running).
var errAbsent = errors.New("service not on the bus")

// absentErrors are the bus errors that mean the service is not there (or
// not yet, or no longer). Seen with NetworkManager 1.42 on Debian 12: while
// it stops, a read sent on its last signal gets NoReply ("disconnected from
// message bus without replying"); while it starts, it owns its name a
// moment before it exports its object, and GDBus (GLib 2.74) answers
// UnknownMethod "Object does not exist at path" (other implementations,
// godbus among them, UnknownObject). A missing property (InvalidArgs) is
// not among them: that is a service we do not understand, and logged.
var absentErrors = map[string]bool{
	"org.freedesktop.DBus.Error.ServiceUnknown": true,
	"org.freedesktop.DBus.Error.NameHasNoOwner": true,
	"org.freedesktop.DBus.Error.UnknownObject":  true,
	"org.freedesktop.DBus.Error.UnknownMethod":  true,
	"org.freedesktop.DBus.Error.NoReply":        true,
}

// readOne reads and decodes one property. An absent service reads as
// false; a failed read or an unexpected value too, logged once until the
// service answers properly again.
func (w *Watcher) readOne(name string, path dbus.ObjectPath, iface, prop string, decode func(dbus.Variant) (bool, error)) bool {
	v, err := w.get(name, path, iface, prop)
	var b bool
	if err == nil {
		b, err = decode(v)
	}
	w.mu.Lock()
	seen := w.failing[name]
	if err == nil || errors.Is(err, errAbsent) {
		delete(w.failing, name)
	} else {
		w.failing[name] = true
	}
	w.mu.Unlock()
	switch {
	case err == nil:
		return b
	case errors.Is(err, errAbsent):
	case !seen:
		w.log.Warn("cannot read host condition; counted as not costly", "service", name, "error", err)
	}
	return false
}

// get reads one property; errAbsent when the service is not on the bus.
func (w *Watcher) get(name string, path dbus.ObjectPath, iface, prop string) (dbus.Variant, error) {
	ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
	defer cancel()
	var v dbus.Variant
	// No auto-start: a read must never start a service the administrator
	// left stopped (NetworkManager and UPower are D-Bus activatable).
	err := w.conn.Object(name, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", dbus.FlagNoAutoStart, iface, prop).Store(&v)
	var de dbus.Error
	if errors.As(err, &de) && absentErrors[de.Name] {
		return v, errAbsent
	}
	if err != nil {
		return v, fmt.Errorf("reading %s.%s: %w", iface, prop, err)
	}
	return v, nil
}
