// Package scheduler decides when job runs start: one cron schedule per job
// with a random start delay, no overlapping runs of one job, never two
// storage-mutating runs at once, a per-run timeout, panic recovery, and
// anacron-style catch-up of runs missed while the daemon was not running.
// It knows nothing of workers: it calls a RunFunc.
//
// Catch-up semantics (see CatchUp and MissedSlot): a job's baseline is the
// later of its last run's start and the moment its current schedule was
// first seen; when the first slot of the schedule after the baseline has
// passed, one catch-up run is armed (however many slots were missed) and
// starts after a random delay in [0, jitter). An armed catch-up makes the
// scheduler Busy, so an idle-exiting daemon stays up until it has run.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/service/api"
)

// maxSleep bounds one wait: Go timers follow the monotonic clock, which
// stops while the machine sleeps; re-reading the wall clock this often
// notices a slot missed during suspend.
const maxSleep = time.Minute

// Request is one run to start.
type Request struct {
	ID      string
	Job     string
	DryRun  bool
	Trigger api.Trigger
	Queued  time.Time
	// Payload is Config.Payload of the configuration in force when the run
	// started (the daemon's policy snapshot): what the run must use.
	Payload any
	// Args are extra worker arguments of a manual run (TriggerWith), e.g.
	// refresh's --pull REF; nil for the job's usual run.
	Args []string
	// Mutating marks a manual run as changing storage although its job
	// usually does not (a refresh that pulls): it then waits for, and
	// excludes, the other mutating runs.
	Mutating bool
}

// RunFunc executes one run and returns when it has ended. ctx carries the
// per-run timeout.
type RunFunc func(ctx context.Context, req Request)

// Job configures one job.
type Job struct {
	Name     string
	Spec     string        // for display
	Schedule cron.Schedule // nil = not scheduled (manual runs only)
	// Mutating says the job changes storage (dry runs never do).
	Mutating bool
}

// Config is the scheduling part of the policy.
type Config struct {
	Jobs    []Job
	Jitter  time.Duration
	Timeout time.Duration // per run; 0 = none
	// Payload is opaque to the scheduler and handed to each run started
	// under this configuration (see Request.Payload).
	Payload any
}

// Options are the scheduler's collaborators.
type Options struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// Jitter returns a random delay in [0, max); default math/rand/v2.
	Jitter func(max time.Duration) time.Duration
	// NewID names a run.
	NewID func(job string, t time.Time) string
	// Changed is called (without locks held) after any job starts or ends.
	Changed func()
}

// ErrBusy is returned when a run of the job is already running or queued.
var ErrBusy = errors.New("job already running or queued")

// ErrUnknownJob is returned for a job the scheduler does not know.
var ErrUnknownJob = errors.New("unknown job")

type jobState struct {
	Job
	next time.Time // jittered start of the next scheduled run
	// catchUp says next is an armed catch-up: the run it starts is a
	// catch-up run, and the scheduler is Busy until it has started.
	catchUp bool
	running *Request
	pending []Request
}

// Scheduler starts runs. All methods are safe for concurrent use.
type Scheduler struct {
	opts Options
	run  RunFunc

	mu      sync.Mutex
	cfg     Config
	jobs    map[string]*jobState
	order   []string
	mutator string // job whose mutating run is in progress
	wg      sync.WaitGroup
	wake    chan struct{}
}

// New returns a scheduler; call Run to start it.
func New(cfg Config, run RunFunc, o Options) *Scheduler {
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Jitter == nil {
		o.Jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max)
		}
	}
	if o.NewID == nil {
		o.NewID = func(job string, t time.Time) string { return fmt.Sprintf("%s-%d", job, t.UnixNano()) }
	}
	s := &Scheduler{opts: o, run: run, jobs: map[string]*jobState{}, wake: make(chan struct{}, 1)}
	s.setConfig(cfg, o.Clock.Now())
	return s
}

// setConfig installs cfg; jobs whose schedule text is unchanged keep their
// next start time. Called with s.mu held (or before Run).
func (s *Scheduler) setConfig(cfg Config, now time.Time) {
	old := s.jobs
	s.jobs = map[string]*jobState{}
	s.order = s.order[:0]
	for _, j := range cfg.Jobs {
		js := &jobState{Job: j}
		if o, ok := old[j.Name]; ok {
			js.running, js.pending = o.running, o.pending
			if o.Spec == j.Spec && cfg.Jitter == s.cfg.Jitter {
				js.next, js.catchUp = o.next, o.catchUp
			}
		}
		if js.next.IsZero() && j.Schedule != nil {
			js.next = s.nextAfter(j.Schedule, now, cfg.Jitter)
		}
		s.jobs[j.Name] = js
		s.order = append(s.order, j.Name)
	}
	s.cfg = cfg
}

func (s *Scheduler) nextAfter(sch cron.Schedule, t time.Time, jitter time.Duration) time.Time {
	n := sch.Next(t)
	if n.IsZero() {
		return n
	}
	return n.Add(s.opts.Jitter(jitter))
}

// Reconfigure installs a new configuration (after a policy reload). Runs in
// progress continue.
func (s *Scheduler) Reconfigure(cfg Config) {
	s.mu.Lock()
	s.setConfig(cfg, s.opts.Clock.Now())
	s.mu.Unlock()
	s.poke()
}

// Baseline is where the catch-up decision for one job starts from.
type Baseline struct {
	// LastRun is the start of the job's last (non-dry) run; zero if none.
	LastRun time.Time
	// Since is when the daemon first saw the job with its current
	// schedule (persisted across restarts); zero if unknown.
	Since time.Time
}

// From is the later of LastRun and Since (zero if both are).
func (b Baseline) From() time.Time {
	if b.LastRun.After(b.Since) {
		return b.LastRun
	}
	return b.Since
}

// MissedSlot returns the first slot of sch after the baseline and whether
// it has passed at now, i.e. whether a catch-up run is due. A job without a
// baseline (never run, never seen) or without a schedule is never due. Pure.
func MissedSlot(sch cron.Schedule, b Baseline, now time.Time) (time.Time, bool) {
	from := b.From()
	if sch == nil || from.IsZero() {
		return time.Time{}, false
	}
	n := sch.Next(from)
	return n, !n.IsZero() && !n.After(now)
}

// CatchUp arms one catch-up run of every scheduled job whose first slot
// after its baseline has already passed (anacron semantics: any number of
// missed slots collapse into one run). The run starts after a random delay
// in [0, jitter) — or at the job's next regular slot if that comes first —
// and the scheduler stays Busy until it has started. Jobs running, queued
// or already armed are left alone. It returns the armed jobs.
func (s *Scheduler) CatchUp(base map[string]Baseline) []string {
	s.mu.Lock()
	now := s.opts.Clock.Now()
	var armed []string
	for _, name := range s.order {
		js := s.jobs[name]
		if js.running != nil || len(js.pending) > 0 || js.catchUp {
			continue
		}
		b := base[name]
		slot, due := MissedSlot(js.Schedule, b, now)
		if !due {
			continue
		}
		at := now.Add(s.opts.Jitter(s.cfg.Jitter))
		if js.next.IsZero() || at.Before(js.next) {
			js.next = at
		}
		js.catchUp = true
		armed = append(armed, name)
		s.opts.Logger.Info("catching up a missed run", "job", name, "last_run", b.LastRun, "since", b.Since, "missed_slot", slot, "start", js.next)
	}
	s.mu.Unlock()
	s.poke()
	return armed
}

// Trigger queues a run now and returns its request (with its id).
func (s *Scheduler) Trigger(job string, dryRun bool) (Request, error) {
	return s.TriggerWith(job, dryRun, nil, false)
}

// TriggerWith is Trigger for a run with extra worker arguments; mutating
// says the run changes storage even if its job usually does not.
func (s *Scheduler) TriggerWith(job string, dryRun bool, args []string, mutating bool) (Request, error) {
	s.mu.Lock()
	js, ok := s.jobs[job]
	if !ok {
		s.mu.Unlock()
		return Request{}, fmt.Errorf("%w: %q", ErrUnknownJob, job)
	}
	if js.running != nil || len(js.pending) > 0 {
		s.mu.Unlock()
		return Request{}, fmt.Errorf("%w: %s", ErrBusy, job)
	}
	now := s.opts.Clock.Now()
	req := Request{ID: s.opts.NewID(job, now), Job: job, DryRun: dryRun, Trigger: api.TriggerManual, Queued: now,
		Args: append([]string(nil), args...), Mutating: mutating}
	js.pending = append(js.pending, req)
	s.mu.Unlock()
	s.poke()
	return req, nil
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run schedules until ctx ends, then waits for runs in progress (their
// contexts are canceled, which stops the workers).
func (s *Scheduler) Run(ctx context.Context) {
	defer s.wg.Wait()
	for {
		wait := s.Tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-s.opts.Clock.After(wait):
		}
	}
}

// Tick starts every due run that may start now and returns how long to wait
// before the next scheduled slot. Run calls it; tests may too.
func (s *Scheduler) Tick(ctx context.Context) time.Duration {
	s.mu.Lock()
	now := s.opts.Clock.Now()
	wait := maxSleep
	var start []Request
	for _, name := range s.order {
		js := s.jobs[name]
		if js.Schedule != nil && !js.next.IsZero() && !js.next.After(now) {
			trigger := api.TriggerSchedule
			if js.catchUp {
				trigger = api.TriggerCatchUp
			}
			if js.running != nil || len(js.pending) > 0 {
				// No overlap: this slot is skipped, the run in progress covers it.
				s.opts.Logger.Info("skipping a scheduled run: previous run still active", "job", name, "trigger", string(trigger))
			} else {
				js.pending = append(js.pending, Request{ID: s.opts.NewID(name, now), Job: name, Trigger: trigger, Queued: now})
			}
			js.next, js.catchUp = s.nextAfter(js.Schedule, now, s.cfg.Jitter), false
		}
	}
	// Start queued runs, oldest first, honouring the mutual exclusion.
	for _, name := range s.byQueueTime() {
		js := s.jobs[name]
		req := js.pending[0]
		mut := (js.Mutating || req.Mutating) && !req.DryRun
		if mut && s.mutator != "" {
			continue
		}
		js.pending = js.pending[1:]
		req.Payload = s.cfg.Payload
		js.running = &req
		if js.catchUp && !req.DryRun && req.Args == nil && js.Schedule != nil {
			// A real run (a manual one) covers the missed slot.
			js.catchUp = false
			js.next = s.nextAfter(js.Schedule, now, s.cfg.Jitter)
		}
		if mut {
			s.mutator = name
		}
		start = append(start, req)
	}
	for _, name := range s.order {
		if n := s.jobs[name].next; !n.IsZero() && n.Sub(now) < wait {
			wait = max(n.Sub(now), 0)
		}
	}
	timeout := s.cfg.Timeout
	s.mu.Unlock()
	for _, req := range start {
		s.wg.Add(1)
		go s.execute(ctx, req, timeout)
	}
	if len(start) > 0 {
		s.changed()
	}
	return wait
}

// byQueueTime lists jobs with queued runs, oldest request first.
func (s *Scheduler) byQueueTime() []string {
	var names []string
	for _, name := range s.order {
		if js := s.jobs[name]; js.running == nil && len(js.pending) > 0 {
			names = append(names, name)
		}
	}
	sort.SliceStable(names, func(i, j int) bool {
		return s.jobs[names[i]].pending[0].Queued.Before(s.jobs[names[j]].pending[0].Queued)
	})
	return names
}

func (s *Scheduler) execute(ctx context.Context, req Request, timeout time.Duration) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		if js, ok := s.jobs[req.Job]; ok && js.running != nil && js.running.ID == req.ID {
			js.running = nil
		}
		if s.mutator == req.Job {
			s.mutator = ""
		}
		s.mu.Unlock()
		s.changed()
		s.poke()
	}()
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("job run panicked", "job", req.Job, "run", req.ID, "panic", fmt.Sprint(p))
		}
	}()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	s.run(ctx, req)
}

func (s *Scheduler) changed() {
	if s.opts.Changed != nil {
		s.opts.Changed()
	}
}

// JobState is a snapshot of one job.
type JobState struct {
	Job
	Next    time.Time
	Running *Request
	Queued  int
	// CatchUp says Next is an armed catch-up run.
	CatchUp bool
}

// Jobs returns a snapshot of every job, in configuration order.
func (s *Scheduler) Jobs() []JobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]JobState, 0, len(s.order))
	for _, name := range s.order {
		js := s.jobs[name]
		st := JobState{Job: js.Job, Next: js.next, Queued: len(js.pending), CatchUp: js.catchUp}
		if js.running != nil {
			r := *js.running
			st.Running = &r
		}
		out = append(out, st)
	}
	return out
}

// Busy reports whether any run is in progress, queued or armed as a
// catch-up (CatchUp).
func (s *Scheduler) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, js := range s.jobs {
		if js.running != nil || len(js.pending) > 0 || js.catchUp {
			return true
		}
	}
	return false
}

// NextDue is the earliest scheduled start (zero if none).
func (s *Scheduler) NextDue() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, js := range s.jobs {
		if !js.next.IsZero() && (t.IsZero() || js.next.Before(t)) {
			t = js.next
		}
	}
	return t
}

// StayUp reports whether a daemon that exits when idle must stay up at now
// for the jobs' sake: a run is in progress, queued or armed as a catch-up,
// or a job's next start (jitter included) is due within horizon. Pure.
func StayUp(jobs []JobState, now time.Time, horizon time.Duration) bool {
	for _, j := range jobs {
		if j.Running != nil || j.Queued > 0 || j.CatchUp {
			return true
		}
		if !j.Next.IsZero() && j.Next.Sub(now) <= horizon {
			return true
		}
	}
	return false
}
