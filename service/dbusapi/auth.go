package dbusapi

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// polkit's well-known name, object and CheckAuthorization flag.
const (
	polkitName       = "org.freedesktop.PolicyKit1"
	polkitPath       = dbus.ObjectPath("/org/freedesktop/PolicyKit1/Authority")
	polkitCheck      = "org.freedesktop.PolicyKit1.Authority.CheckAuthorization"
	polkitAllowInter = uint32(1) // AllowUserInteraction
)

// polkitSubject is polkit's (sa{sv}) Subject.
type polkitSubject struct {
	Kind    string
	Details map[string]dbus.Variant
}

// polkitResult is polkit's (bba{ss}) AuthorizationResult.
type polkitResult struct {
	IsAuthorized bool
	IsChallenge  bool
	Details      map[string]string
}

// authorize returns nil when the caller may use a mutating method: always
// when auth is off, else for uid 0 or a polkit grant of PolkitAction. Any
// failure to find out (no sender, bus error, no polkit) refuses.
func (s *Server) authorize(ctx context.Context, sender dbus.Sender, method string) *dbus.Error {
	if !s.auth {
		return nil
	}
	uid, err := s.callerUID(ctx, sender)
	if err == nil && uid == 0 {
		return nil
	}
	if err != nil {
		s.log.Warn("refusing D-Bus call: cannot identify caller", "method", method,
			"sender", string(sender), "error", err)
		return accessDenied(method)
	}
	ok, err := s.polkitAllowed(ctx, sender)
	if err != nil {
		s.log.Warn("refusing D-Bus call: polkit check failed", "method", method,
			"sender", string(sender), "uid", uid, "error", err)
		return accessDenied(method)
	}
	if !ok {
		s.log.Info("refusing D-Bus call: not authorized", "method", method,
			"sender", string(sender), "uid", uid)
		return accessDenied(method)
	}
	return nil
}

func accessDenied(method string) *dbus.Error {
	return dbus.NewError(ErrorAccessDenied,
		[]any{fmt.Sprintf("%s requires root or the polkit action %s", method, PolkitAction)})
}

// callerUID asks the bus daemon for the sender's uid.
func (s *Server) callerUID(ctx context.Context, sender dbus.Sender) (uint32, error) {
	if sender == "" {
		return 0, fmt.Errorf("no sender")
	}
	var uid uint32
	err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser",
		0, string(sender)).Store(&uid)
	if err != nil {
		return 0, fmt.Errorf("GetConnectionUnixUser: %w", err)
	}
	return uid, nil
}

// polkitAllowed runs CheckAuthorization for the sender's bus name.
func (s *Server) polkitAllowed(ctx context.Context, sender dbus.Sender) (bool, error) {
	subject := polkitSubject{
		Kind:    "system-bus-name",
		Details: map[string]dbus.Variant{"name": dbus.MakeVariant(string(sender))},
	}
	var res polkitResult
	err := s.conn.Object(polkitName, polkitPath).CallWithContext(ctx, polkitCheck, 0,
		subject, PolkitAction, map[string]string{}, polkitAllowInter, "").Store(&res)
	if err != nil {
		return false, fmt.Errorf("CheckAuthorization: %w", err)
	}
	return res.IsAuthorized, nil
}
