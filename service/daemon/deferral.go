package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/deferral"
	"github.com/stowage/stowage/service/hoststate"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/service/scheduler"
)

// HostState is what the daemon reads of the host's conditions
// (*hoststate.Watcher).
type HostState interface {
	State() hoststate.State
	// Changed receives a value after State changed.
	Changed() <-chan struct{}
}

var _ HostState = (*hoststate.Watcher)(nil)

// busyRetry is how soon a catch-up of deferred work is tried again while
// its job is still running or queued.
const busyRetry = time.Second

// conditions are the host's conditions now.
func (d *Daemon) conditions() deferral.Conditions {
	if d.opts.HostState == nil {
		return deferral.Conditions{}
	}
	s := d.opts.HostState.State()
	return deferral.Conditions{Metered: s.Metered, OnBattery: s.OnBattery}
}

// decide is what a run of job under p leaves out now; it says so in the
// log when that is anything.
func (d *Daemon) decide(p *policy.Policy, job string, dryRun bool) deferral.Decision {
	dec := deferral.Decide(p, job, dryRun, d.conditions())
	if dec.Pulls != "" {
		d.log.Info("deferring pulls", journal.AttrJob, job, "reason", dec.Pulls)
	}
	if dec.Integrity != "" {
		d.log.Info("deferring the integrity scan", journal.AttrJob, job, "reason", dec.Integrity)
	}
	return dec
}

// earlierRun stands for the reason of a deferral made before this daemon
// started (the reports keep the figures, not the decision).
const earlierRun = "deferred by an earlier run"

// owedFrom rebuilds, from each job's last recorded run, the work it left
// out: a daemon started later (by its timer, after an idle exit) still
// catches it up once the condition has cleared.
func owedFrom(last map[string]*api.Run) deferral.Owed {
	o := deferral.Owed{}
	for job, r := range last {
		var c report.Common
		if r.DryRun || len(r.Report) == 0 || json.Unmarshal(r.Report, &c) != nil {
			continue
		}
		o.Record(job, deferral.Left(deferral.Decision{Pulls: earlierRun, Integrity: earlierRun}, c.Metrics))
	}
	return o
}

// recordDeferred notes what a finished run left out (or that it left
// nothing out, settling what its job owed) and has the watcher check at
// once whether the condition cleared meanwhile.
func (d *Daemon) recordDeferred(job string, left deferral.Decision) {
	d.mu.Lock()
	d.owed.Record(job, left)
	d.mu.Unlock()
	if !left.Zero() {
		select {
		case d.deferKick <- struct{}{}:
		default:
		}
	}
}

// watchHost runs, until ctx ends, the catch-up of deferred work: at start,
// when the host's conditions change and when a run just left work out,
// each job whose owed work would no longer be deferred is triggered. The returned channel
// is closed when it has stopped.
func (d *Daemon) watchHost(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var changed <-chan struct{}
	if d.opts.HostState != nil {
		changed = d.opts.HostState.Changed()
		c := d.conditions()
		d.log.Info("host conditions", "metered", c.Metered, "on_battery", c.OnBattery)
	}
	go func() {
		defer close(done)
		// Work owed from before this start may be due already.
		var retry <-chan time.Time
		if d.catchUpDeferred() {
			retry = time.After(busyRetry)
		}
		var settle <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				// A service restarting or a link coming up reads as
				// "not costly" for a moment: act on a change once the
				// conditions have held for the settle time.
				settle = time.After(d.opts.DeferredSettle)
				continue
			case <-settle:
				settle = nil
			case <-d.deferKick:
			case <-retry:
			}
			retry = nil
			if d.catchUpDeferred() {
				retry = time.After(busyRetry)
			}
		}
	}()
	return done
}

// catchUpDeferred triggers the jobs whose deferred work can run now; it
// reports whether one of them was busy (to be tried again).
func (d *Daemon) catchUpDeferred() (busy bool) {
	c := d.conditions()
	d.mu.Lock()
	p := d.snap.Policy
	due := d.owed.Due(func(job string) deferral.Decision { return deferral.Decide(p, job, false, c) })
	d.mu.Unlock()
	for _, job := range due {
		r, err := d.Trigger(job, false)
		if errors.Is(err, scheduler.ErrBusy) {
			busy = true
			continue
		}
		d.mu.Lock()
		delete(d.owed, job)
		d.mu.Unlock()
		if err != nil {
			d.log.Warn("cannot catch up deferred work", journal.AttrJob, job, "err", err)
			continue
		}
		d.log.Info("catching up deferred work", journal.AttrJob, job, journal.AttrRunID, r.ID)
	}
	return busy
}
