package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/pins"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/scheduler"
)

// startBus connects to the bus (session bus in user mode, system bus in
// system mode), exports the D-Bus object and, in user mode, sets up desktop
// notifications. Without a bus the daemon runs on and says why in its
// status. It returns a function that takes everything down.
func (d *Daemon) startBus() func() {
	if d.opts.NoBus {
		d.setBus("none: disabled")
		return func() {}
	}
	var conn *dbus.Conn
	var err error
	if d.opts.BusAddress != "" {
		conn, err = dbusapi.ConnectAddress(d.opts.BusAddress)
	} else {
		conn, err = dbusapi.Connect(d.opts.System)
	}
	if err != nil {
		d.log.Warn("running without D-Bus", "error", err)
		d.setBus("none: " + err.Error())
		return func() {}
	}
	b := &busObserver{d: d}
	srv, err := dbusapi.Export(dbusapi.Options{
		Conn: conn, Backend: busBackend{d}, Logger: d.log, RequireAuth: d.opts.System,
		Status: b.status(d.Status()),
	})
	if err != nil {
		d.log.Warn("running without D-Bus", "error", err)
		d.setBus("none: " + err.Error())
		conn.Close()
		return func() {}
	}
	b.srv = srv
	d.busSrv = srv
	if !d.opts.System && d.opts.State != nil {
		n, err := notify.New(notify.Options{Conn: conn, State: d.opts.State, Policy: d.Policy().Notify, Logger: d.log, Events: d.opts.Jobs.EventKinds(),
			Actor: notifyActor{d}, Opener: d.opts.ReportOpener})
		if err != nil {
			d.log.Warn("desktop notifications off", "error", err)
		} else {
			b.notifier = n
			d.notifier = n
		}
	}
	d.observers = append(d.observers, b)
	d.setBus(dbusapi.BusName + " on the " + map[bool]string{true: "system", false: "session"}[d.opts.System] + " bus")
	return func() {
		srv.Update(func(s *dbusapi.Status) { s.State = "stopping" })
		_ = srv.Close()
		if b.notifier != nil {
			b.notifier.Close()
		}
		conn.Close()
	}
}

func (d *Daemon) setBus(s string) {
	d.mu.Lock()
	d.bus = s
	d.mu.Unlock()
}

// busObserver publishes runs and state on D-Bus and sends notifications.
type busObserver struct {
	d        *Daemon
	srv      *dbusapi.Server
	notifier *notify.Notifier
}

func (b *busObserver) status(s api.Status) dbusapi.Status {
	st := dbusapi.Status{
		Version: s.Version, Mode: s.Mode, State: s.State, PolicyPath: s.PolicyPath, PolicyError: s.PolicyError,
	}
	for _, j := range s.Jobs {
		st.Jobs = append(st.Jobs, busJob(j))
	}
	return st
}

func busJob(j api.Job) dbusapi.Job {
	bj := dbusapi.Job{Name: j.Name, Schedule: j.Schedule, NextRun: j.Next, Running: j.Running != ""}
	if r := j.LastRun; r != nil {
		bj.LastRun, bj.LastOutcome, bj.LastSummary = r.Started, string(r.Outcome), r.Summary
	}
	return bj
}

func (b *busObserver) RunStarted(r *api.Run) {
	if err := b.srv.EmitJobStarted(r.Job, r.ID, r.DryRun); err != nil {
		b.d.log.Warn("D-Bus signal", "error", err)
	}
}

func (b *busObserver) RunFinished(ctx context.Context, r *api.Run) {
	if err := b.srv.EmitJobFinished(r.Job, r.ID, string(r.Outcome), r.Summary); err != nil {
		b.d.log.Warn("D-Bus signal", "error", err)
	}
	if r.Common == nil || r.DryRun {
		return
	}
	for _, ev := range r.Common.Events {
		if err := b.srv.EmitEvent(r.ID, ev); err != nil {
			b.d.log.Warn("D-Bus signal", "error", err)
		}
	}
	if d, ok := b.d.opts.Jobs.Lookup(r.Job); ok && d.MeasuresStore {
		m := r.Common.Metrics
		if used, ok := m["usage_bytes"]; ok {
			b.srv.Update(func(s *dbusapi.Status) {
				s.StorageUsedBytes = uint64(max(used, 0))
				s.StorageLimitBytes = uint64(max(m["limit_bytes"], 0))
			})
		}
	}
	if b.notifier != nil {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := b.notifier.NotifyRun(nctx, r.Job, r.ID, WantedEvents(b.d.Policy().Notify, r.Job, r.Common.Events)); err != nil {
			b.d.log.Warn("desktop notification", "error", err)
		}
	}
}

func (b *busObserver) PolicyLoaded(p *policy.Policy, err error) {
	if p != nil && b.notifier != nil {
		b.notifier.SetPolicy(p.Notify)
	}
	b.StateChanged(b.d.Status())
}

func (b *busObserver) StateChanged(s api.Status) {
	st := b.status(s)
	b.srv.Update(func(cur *dbusapi.Status) {
		cur.State, cur.PolicyPath, cur.PolicyError, cur.Jobs = st.State, st.PolicyPath, st.PolicyError, st.Jobs
	})
}

// WantedEvents are the events whose topic [notify] topics lets through.
func WantedEvents(p policy.Notify, job string, evs []report.Event) []report.Event {
	var out []report.Event
	for _, ev := range evs {
		if p.Wants(job, ev.Kind, ev.Topic) {
			out = append(out, ev)
		}
	}
	return out
}

// busBackend serves the D-Bus methods from the daemon.
type busBackend struct{ d *Daemon }

var _ dbusapi.Backend = busBackend{}

func (b busBackend) ListJobs(context.Context) ([]dbusapi.Job, error) {
	var out []dbusapi.Job
	for _, j := range b.d.jobs() {
		out = append(out, busJob(j))
	}
	return out, nil
}

func (b busBackend) RunJob(_ context.Context, job string, dryRun bool) (string, error) {
	r, err := b.d.Trigger(job, dryRun)
	switch {
	case errors.Is(err, scheduler.ErrUnknownJob):
		return "", fmt.Errorf("%w: %w", dbusapi.ErrUnknownJob, err)
	case errors.Is(err, scheduler.ErrBusy):
		return "", fmt.Errorf("%w: %w", dbusapi.ErrBusy, err)
	case err != nil:
		return "", err
	}
	return r.ID, nil
}

// Pull starts a refresh run that pulls ref (Daemon.Pull).
func (b busBackend) Pull(_ context.Context, ref string) (string, error) {
	r, err := b.d.Pull(ref)
	switch {
	case errors.Is(err, ErrInvalidRef):
		return "", fmt.Errorf("%w: %w", dbusapi.ErrInvalidArgs, err)
	case errors.Is(err, scheduler.ErrUnknownJob):
		return "", fmt.Errorf("%w: %w", dbusapi.ErrUnknownJob, err)
	case errors.Is(err, scheduler.ErrBusy):
		return "", fmt.Errorf("%w: %w", dbusapi.ErrBusy, err)
	case err != nil:
		return "", err
	}
	return r.ID, nil
}

// RecentRuns lists the recorded runs (not dry runs) that ended after
// since, oldest first.
func (b busBackend) RecentRuns(_ context.Context, since time.Time) ([]dbusapi.RunRef, error) {
	// Newest first by start; a run that ended after since started at most
	// one run timeout earlier, so a bounded look back suffices.
	hist, err := b.d.opts.Runs.History("", 4*dbusapi.MaxRecentRuns)
	if err != nil {
		return nil, err
	}
	var out []dbusapi.RunRef
	for _, r := range hist {
		// Compared in µs, the resolution on the bus.
		if r.DryRun || r.Finished.IsZero() || r.Finished.UnixMicro() <= since.UnixMicro() {
			continue
		}
		out = append(out, dbusapi.RunRef{ID: r.ID, Job: r.Job, Finished: r.Finished})
	}
	slices.SortFunc(out, func(a, b dbusapi.RunRef) int { return a.Finished.Compare(b.Finished) })
	if len(out) > dbusapi.MaxRecentRuns {
		out = out[len(out)-dbusapi.MaxRecentRuns:]
	}
	return out, nil
}

// GetReport returns the run record as JSON, the worker's report under
// "report".
func (b busBackend) GetReport(_ context.Context, id string) (string, error) {
	r, err := b.d.GetRun(id)
	if errors.Is(err, runs.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", dbusapi.ErrUnknownRun, err)
	}
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(r)
	return string(data), err
}

func (b busBackend) Reload(context.Context) error {
	if res := b.d.Reload(); !res.OK {
		return errors.New(res.Error)
	}
	return nil
}

func (b busBackend) Pin(_ context.Context, ref string) error {
	if b.d.opts.State == nil {
		return errors.New("no state database")
	}
	if _, err := pins.Normalize(ref); err != nil {
		return fmt.Errorf("%w: %w", dbusapi.ErrInvalidArgs, err)
	}
	_, err := pins.Add(b.d.opts.State, ref, time.Now())
	return err
}

func (b busBackend) Unpin(_ context.Context, ref string) error {
	if b.d.opts.State == nil {
		return errors.New("no state database")
	}
	if _, err := pins.Normalize(ref); err != nil {
		return fmt.Errorf("%w: %w", dbusapi.ErrInvalidArgs, err)
	}
	err := pins.Remove(b.d.opts.State, ref)
	if errors.Is(err, pins.ErrNotPinned) {
		return fmt.Errorf("%w: %w", dbusapi.ErrInvalidArgs, err)
	}
	return err
}
