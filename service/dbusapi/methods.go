package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// methods is the exported Manager interface; godbus maps its exported
// methods to D-Bus methods (Sender parameters are filled in, not sent).
type methods struct {
	s *Server
}

func (m *methods) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), m.s.timeout)
}

// ListJobs returns a(sstsstb).
func (m *methods) ListJobs() ([]JobEntry, *dbus.Error) {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	jobs, err := m.s.backend.ListJobs(ctx)
	if err != nil {
		return nil, toDBusError(err)
	}
	out := make([]JobEntry, 0, len(jobs))
	for _, j := range jobs {
		out = append(out, j.Entry())
	}
	return out, nil
}

// RunJob(s job, b dry_run) → s run_id. Mutating.
func (m *methods) RunJob(sender dbus.Sender, job string, dryRun bool) (string, *dbus.Error) {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if derr := m.s.authorize(ctx, sender, "RunJob"); derr != nil {
		return "", derr
	}
	id, err := m.s.backend.RunJob(ctx, job, dryRun)
	if err != nil {
		return "", toDBusError(err)
	}
	return id, nil
}

// PullImage(s ref) → s run_id: pulls one reference now (the "Pull update"
// action of a notification). Mutating.
func (m *methods) PullImage(sender dbus.Sender, ref string) (string, *dbus.Error) {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if derr := m.s.authorize(ctx, sender, "PullImage"); derr != nil {
		return "", derr
	}
	id, err := m.s.backend.Pull(ctx, ref)
	if err != nil {
		return "", toDBusError(err)
	}
	return id, nil
}

// RecentRuns(t since_usec) → a(sst): finished runs that ended after
// since (run id, job, end µs), oldest first. Read-only.
func (m *methods) RecentRuns(sinceUsec uint64) ([]RunRefEntry, *dbus.Error) {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if sinceUsec > math.MaxInt64 {
		return nil, toDBusError(fmt.Errorf("%w: since %d out of range", ErrInvalidArgs, sinceUsec))
	}
	refs, err := m.s.backend.RecentRuns(ctx, time.UnixMicro(int64(sinceUsec)))
	if err != nil {
		return nil, toDBusError(err)
	}
	out := make([]RunRefEntry, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.Entry())
	}
	return out, nil
}

// GetReport(s run_id) → s json.
func (m *methods) GetReport(runID string) (string, *dbus.Error) {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	js, err := m.s.backend.GetReport(ctx, runID)
	if err != nil {
		return "", toDBusError(err)
	}
	return js, nil
}

// Reload re-reads the policy. Mutating.
func (m *methods) Reload(sender dbus.Sender) *dbus.Error {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if derr := m.s.authorize(ctx, sender, "Reload"); derr != nil {
		return derr
	}
	return toDBusError(m.s.backend.Reload(ctx))
}

// Pin(s ref). Mutating.
func (m *methods) Pin(sender dbus.Sender, ref string) *dbus.Error {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if derr := m.s.authorize(ctx, sender, "Pin"); derr != nil {
		return derr
	}
	return toDBusError(m.s.backend.Pin(ctx, ref))
}

// Unpin(s ref). Mutating.
func (m *methods) Unpin(sender dbus.Sender, ref string) *dbus.Error {
	defer m.s.called()()
	ctx, cancel := m.ctx()
	defer cancel()
	if derr := m.s.authorize(ctx, sender, "Unpin"); derr != nil {
		return derr
	}
	return toDBusError(m.s.backend.Unpin(ctx, ref))
}

// toDBusError maps backend errors to D-Bus errors; nil stays nil.
func toDBusError(err error) *dbus.Error {
	if err == nil {
		return nil
	}
	name := ErrorFailed
	switch {
	case errors.Is(err, ErrUnknownJob):
		name = ErrorUnknownJob
	case errors.Is(err, ErrUnknownRun):
		name = ErrorUnknownRun
	case errors.Is(err, ErrBusy):
		name = ErrorBusy
	case errors.Is(err, ErrInvalidArgs):
		name = ErrorInvalidArgs
	}
	return dbus.NewError(name, []any{err.Error()})
}

// properties serves org.freedesktop.DBus.Properties from prop, counting
// each call as activity.
type properties struct {
	s *Server
	p *prop.Properties
}

// Get implements org.freedesktop.DBus.Properties.Get.
func (w properties) Get(iface, property string) (dbus.Variant, *dbus.Error) {
	defer w.s.called()()
	return w.p.Get(iface, property)
}

// GetAll implements org.freedesktop.DBus.Properties.GetAll.
func (w properties) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	defer w.s.called()()
	return w.p.GetAll(iface)
}

// Set implements org.freedesktop.DBus.Properties.Set (every property is
// read-only: prop refuses).
func (w properties) Set(iface, property string, v dbus.Variant) *dbus.Error {
	defer w.s.called()()
	return w.p.Set(iface, property, v)
}

// introspectable serves org.freedesktop.DBus.Introspectable, counting each
// call as activity.
type introspectable struct {
	s *Server
	i introspect.Introspectable
}

// Introspect implements org.freedesktop.DBus.Introspectable.Introspect.
func (w introspectable) Introspect() (string, *dbus.Error) {
	defer w.s.called()()
	return w.i.Introspect()
}
