package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/policy/imageref"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/control"
	"github.com/stowage/stowage/service/deferral"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/service/scheduler"
)

var _ control.Backend = (*Daemon)(nil)

// execute is the scheduler's RunFunc: one worker process per run.
func (d *Daemon) execute(ctx context.Context, req scheduler.Request) {
	r := &api.Run{
		ID: req.ID, Job: req.Job, DryRun: req.DryRun, Trigger: req.Trigger,
		Queued: req.Queued, Started: time.Now(), Outcome: api.OutcomeRunning,
		Args: req.Args,
	}
	d.mu.Lock()
	d.active[r.ID] = r
	d.mu.Unlock()
	d.metrics.SetRunning(r.Job, true)
	log := d.log.With(journal.AttrJob, r.Job, journal.AttrRunID, r.ID)
	log.Info("job started", journal.AttrKind, journal.KindJobStarted, "dry_run", r.DryRun, journal.AttrTrigger, string(r.Trigger))
	for _, o := range d.observers {
		o.RunStarted(copyRun(r))
	}

	sp := *d.opts.Spawner
	sp.JobArgs = append(append([]string(nil), sp.JobArgs...), req.Args...)
	// The worker gets the policy this run was scheduled under, never a
	// file: an edited-but-not-reloaded or broken file changes nothing.
	var runPol *policy.Policy
	if rp, ok := req.Payload.(*runPolicy); ok {
		sp.Policy, runPol = rp.encoded, rp.policy
	} else {
		d.mu.Lock()
		snap := d.snap
		d.mu.Unlock()
		enc, err := snap.Encode()
		if err != nil {
			log.Error("encoding the policy for the worker", "err", err)
		}
		sp.Policy, runPol = enc, snap.Policy
	}
	// What the run leaves out on a metered connection or battery is
	// passed as the job's own flags, never by changing its policy. A run
	// someone asked for with its own arguments (a notification's "Pull
	// update") is their decision to spend: nothing is deferred.
	var dec deferral.Decision
	whole := len(req.Args) == 0 // the job's whole run, not one reference
	if whole {
		dec = d.decide(runPol, r.Job, r.DryRun)
		sp.JobArgs = append(sp.JobArgs, dec.Args()...)
	}
	if sp.Logger != nil {
		sp.Logger = sp.Logger.With(journal.AttrRunID, r.ID, journal.AttrTrigger, string(r.Trigger))
	}
	res, err := sp.Run(ctx, r.Job, r.DryRun)

	done := copyRun(r)
	done.Finished = time.Now()
	done.ExitCode = res.ExitCode
	done.Report = res.Raw
	done.Common = res.Common
	if res.Common != nil {
		done.Summary = res.Common.Summary
	}
	switch {
	case err == nil:
		done.Outcome = api.OutcomeSucceeded
	case errors.Is(err, context.DeadlineExceeded):
		done.Outcome = api.OutcomeTimedOut
	case errors.Is(err, context.Canceled):
		done.Outcome = api.OutcomeCanceled
	default:
		done.Outcome = api.OutcomeFailed
	}
	if err != nil {
		done.Error = err.Error()
	}
	// Persist before dropping the in-memory record: a client polling the run
	// always finds it.
	if perr := d.opts.Runs.Put(done); perr != nil {
		log.Error("recording run", "err", perr)
	}
	d.mu.Lock()
	delete(d.active, r.ID)
	if !done.DryRun {
		l := copyRun(done)
		l.Report = nil
		d.last[done.Job] = l
	}
	d.mu.Unlock()
	d.metrics.SetRunning(done.Job, false)
	if done.Common != nil && !done.DryRun && whole {
		d.recordDeferred(done.Job, deferral.Left(dec, done.Common.Metrics))
	}
	// A job that needs the state database fails while it is damaged, and
	// one may have found it so: status says so until it is fixed.
	d.checkState()

	attrs := []any{"outcome", string(done.Outcome), "dry_run", done.DryRun, "duration", done.Duration().String(), "summary", done.Summary}
	if err != nil {
		log.Error("job failed", append(attrs, journal.AttrKind, journal.KindJobFailed, journal.AttrError, err)...)
	} else {
		log.Info("job finished", append(attrs, journal.AttrKind, journal.KindJobFinished)...)
	}
	if done.Common != nil && !done.DryRun {
		for _, ev := range done.Common.Events {
			journal.LogEvent(ctx, d.log, done.Job, done.ID, ev)
		}
	}
	for _, o := range d.observers {
		o.RunFinished(context.WithoutCancel(ctx), done)
	}
	// Last: it reads the state database, which a worker may hold for a
	// moment, and the run is fully reported without it.
	if !done.DryRun {
		d.updateMetrics()
	}
}

func copyRun(r *api.Run) *api.Run {
	c := *r
	return &c
}

// Status is the daemon's status.
func (d *Daemon) Status() api.Status {
	jobs := d.jobs()
	d.mu.Lock()
	s := api.Status{
		Version: d.opts.Version, Mode: d.Mode(), PID: os.Getpid(), Started: d.started,
		State: "idle", PolicyError: d.policyErr, PolicyLoad: d.policyLoad, Bus: d.bus,
		StateError: d.stateErr,
	}
	s.PolicyFiles = d.snap.Files()
	s.PolicyPath = s.PolicyFiles[0]
	if len(d.snap.Sources) > 0 {
		s.PolicyPath = d.snap.Sources[0].Name
	}
	d.mu.Unlock()
	s.Jobs = jobs
	for _, j := range jobs {
		if j.Running != "" {
			s.Running = append(s.Running, j.Name)
			s.State = "running"
		}
	}
	return s
}

// Jobs lists every job with its schedule and last run (without reports).
func (d *Daemon) Jobs() ([]api.Job, error) { return d.jobs(), nil }

func (d *Daemon) jobs() []api.Job {
	sj := d.sched.Jobs()
	out := make([]api.Job, 0, len(sj))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range sj {
		aj := api.Job{Name: j.Name, Schedule: j.Spec, Mutating: j.Mutating, Next: j.Next, Queued: j.Queued}
		if j.Running != nil {
			aj.Running = j.Running.ID
		}
		if r := d.last[j.Name]; r != nil {
			aj.LastRun = copyRun(r)
		}
		out = append(out, aj)
	}
	return out
}

// Trigger queues a run now.
func (d *Daemon) Trigger(job string, dryRun bool) (*api.Run, error) {
	return d.trigger(job, dryRun, nil, false)
}

// PullJob is the job that pulls one reference on request (Pull).
const PullJob = "refresh"

// Pull queues a refresh run that pulls ref now, whatever refresh.mode says
// (the worker's `run refresh --pull=REF`): a notification's "Pull update"
// action. The run changes storage, so it waits for other mutating runs.
func (d *Daemon) Pull(ref string) (*api.Run, error) {
	n, err := imageref.Normalize(strings.TrimSpace(ref))
	if err != nil {
		return nil, fmt.Errorf("%w: %q is not an image reference: %w", ErrInvalidRef, ref, err)
	}
	return d.trigger(PullJob, false, []string{"--pull=" + n}, true)
}

// ErrInvalidRef is returned by Pull for a string that is not an image
// reference.
var ErrInvalidRef = errors.New("invalid image reference")

func (d *Daemon) trigger(job string, dryRun bool, args []string, mutating bool) (*api.Run, error) {
	// d.mu is held from queueing to recording the queued run: execute
	// takes d.mu first, so a run cannot start, let alone end, before its
	// queued entry exists, which it then replaces and finally removes. (The
	// scheduler never calls into the daemon with its own lock held.)
	d.mu.Lock()
	defer d.mu.Unlock()
	req, err := d.sched.TriggerWith(job, dryRun, args, mutating)
	if err != nil {
		return nil, err
	}
	if d.opts.testAfterQueue != nil {
		d.opts.testAfterQueue(req.ID)
	}
	if r, ok := d.active[req.ID]; ok { // already started
		return copyRun(r), nil
	}
	r := &api.Run{ID: req.ID, Job: job, DryRun: dryRun, Trigger: req.Trigger, Queued: req.Queued, Outcome: api.OutcomeQueued}
	r.Args = req.Args
	// Visible to Run(id) until the worker starts; execute replaces it.
	d.active[req.ID] = r
	return copyRun(r), nil
}

// GetRun returns a run, in progress or recorded.
func (d *Daemon) GetRun(id string) (*api.Run, error) {
	d.mu.Lock()
	if r, ok := d.active[id]; ok {
		d.mu.Unlock()
		return copyRun(r), nil
	}
	d.mu.Unlock()
	return d.opts.Runs.Get(id)
}

// Latest returns job's newest run: the one in progress, else the last recorded.
func (d *Daemon) Latest(job string) (*api.Run, error) {
	if !slices.ContainsFunc(d.sched.Jobs(), func(j scheduler.JobState) bool { return j.Name == job }) {
		return nil, scheduler.ErrUnknownJob
	}
	d.mu.Lock()
	var cur *api.Run
	for _, r := range d.active {
		if r.Job == job && (cur == nil || r.Queued.After(cur.Queued)) {
			cur = r
		}
	}
	if cur != nil {
		cur = copyRun(cur)
	}
	d.mu.Unlock()
	if cur != nil {
		return cur, nil
	}
	return d.opts.Runs.Latest(job)
}

// History lists recorded runs, newest first, without their reports.
func (d *Daemon) History(job string, limit int) ([]*api.Run, error) {
	h, err := d.opts.Runs.History(job, limit)
	for _, r := range h {
		r.Report = nil
	}
	return h, err
}
