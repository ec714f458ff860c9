package scheduler

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
)

var t0 = time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)

func sched(t *testing.T, spec string) Job {
	t.Helper()
	s, err := policy.ParseCron(spec)
	if err != nil {
		t.Fatal(err)
	}
	return Job{Spec: spec, Schedule: s}
}

func job(t *testing.T, name, spec string, mutating bool) Job {
	j := sched(t, spec)
	j.Name, j.Mutating = name, mutating
	return j
}

// recorder is a RunFunc whose runs block until released.
type recorder struct {
	mu       sync.Mutex
	started  []Request
	active   map[string]int
	maxJob   map[string]int
	mutating int
	maxMut   int
	mutJobs  map[string]bool
	release  chan struct{}
	startedC chan Request
}

func newRecorder(mutJobs ...string) *recorder {
	r := &recorder{active: map[string]int{}, maxJob: map[string]int{}, mutJobs: map[string]bool{},
		release: make(chan struct{}), startedC: make(chan Request, 100)}
	for _, j := range mutJobs {
		r.mutJobs[j] = true
	}
	return r
}

func (r *recorder) run(ctx context.Context, req Request) {
	mut := r.mutJobs[req.Job] && !req.DryRun
	r.mu.Lock()
	r.started = append(r.started, req)
	r.active[req.Job]++
	r.maxJob[req.Job] = max(r.maxJob[req.Job], r.active[req.Job])
	if mut {
		r.mutating++
		r.maxMut = max(r.maxMut, r.mutating)
	}
	r.mu.Unlock()
	r.startedC <- req
	select {
	case <-r.release:
	case <-ctx.Done():
	}
	r.mu.Lock()
	r.active[req.Job]--
	if mut {
		r.mutating--
	}
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.started)
}

func waitStarted(t *testing.T, r *recorder) Request {
	t.Helper()
	select {
	case req := <-r.startedC:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("no run started")
		return Request{}
	}
}

func noStart(t *testing.T, r *recorder) {
	t.Helper()
	select {
	case req := <-r.startedC:
		t.Fatalf("unexpected run started: %+v", req)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestJitterBounds(t *testing.T) {
	const jitter = 15 * time.Minute
	slot := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC) // next @hourly after t0
	cases := []struct {
		name string
		draw time.Duration
	}{
		{"none", 0}, {"mid", 7 * time.Minute}, {"max", jitter - time.Nanosecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var gotMax time.Duration
			s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true)}, Jitter: jitter}, nil, Options{
				Clock:  newFakeClock(t0),
				Jitter: func(m time.Duration) time.Duration { gotMax = m; return c.draw },
			})
			if gotMax != jitter {
				t.Fatalf("jitter drawn with max %v, want %v", gotMax, jitter)
			}
			if next := s.Jobs()[0].Next; !next.Equal(slot.Add(c.draw)) {
				t.Fatalf("next = %v, want %v", next, slot.Add(c.draw))
			}
		})
	}
	// The default random source stays within [slot, slot+jitter).
	for i := 0; i < 500; i++ {
		s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true)}, Jitter: jitter}, nil, Options{Clock: newFakeClock(t0)})
		next := s.Jobs()[0].Next
		if next.Before(slot) || !next.Before(slot.Add(jitter)) {
			t.Fatalf("next %v outside [%v, %v)", next, slot, slot.Add(jitter))
		}
	}
}

func TestScheduledRunAndNoOverlap(t *testing.T) {
	clk := newFakeClock(t0)
	rec := newRecorder()
	s := New(Config{Jobs: []Job{job(t, "refresh", "@every 10m", false)}}, rec.run, Options{Clock: clk})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	noStart(t, rec)
	clk.Advance(10 * time.Minute)
	req := waitStarted(t, rec)
	if req.Job != "refresh" || req.Trigger != api.TriggerSchedule {
		t.Fatalf("started %+v", req)
	}
	// Two more slots pass while the run is still going: no second run.
	clk.Advance(10 * time.Minute)
	clk.Advance(10 * time.Minute)
	noStart(t, rec)
	if _, err := s.Trigger("refresh", false); err == nil {
		t.Fatal("manual trigger while running: want ErrBusy")
	}
	rec.release <- struct{}{}
	// The next slot runs again, once.
	deadline := time.Now().Add(5 * time.Second)
	for s.Busy() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	clk.Advance(10 * time.Minute)
	waitStarted(t, rec)
	noStart(t, rec)
	if rec.maxJob["refresh"] != 1 {
		t.Fatalf("max concurrent refresh runs = %d, want 1", rec.maxJob["refresh"])
	}
	close(rec.release)
}

func TestMissedSlot(t *testing.T) {
	hourly, daily := sched(t, "@hourly").Schedule, sched(t, "@daily").Schedule
	every2 := sched(t, "*/2 * * * *").Schedule
	now := t0 // 10:30
	cases := []struct {
		name string
		sch  Job
		b    Baseline
		slot time.Time
		due  bool
	}{
		{"never run, never seen", Job{Schedule: hourly}, Baseline{}, time.Time{}, false},
		{"unscheduled", Job{}, Baseline{LastRun: now.Add(-48 * time.Hour)}, time.Time{}, false},
		{"last run before a passed slot", Job{Schedule: hourly}, Baseline{LastRun: now.Add(-3 * time.Hour)}, t0.Add(-150 * time.Minute), true},
		{"last run after the last slot", Job{Schedule: hourly}, Baseline{LastRun: now.Add(-10 * time.Minute)}, t0.Add(30 * time.Minute), false},
		{"fresh install: seen before a passed slot", Job{Schedule: every2}, Baseline{Since: now.Add(-150 * time.Second)}, now.Add(-2 * time.Minute), true},
		{"fresh install: seen at the last slot", Job{Schedule: every2}, Baseline{Since: now}, now.Add(2 * time.Minute), false},
		{"slot exactly now", Job{Schedule: every2}, Baseline{Since: now.Add(-time.Minute)}, now, true},
		{"schedule changed after the last run", Job{Schedule: daily}, Baseline{LastRun: now.Add(-72 * time.Hour), Since: now.Add(-time.Hour)}, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), false},
		{"seen long ago, last run recent", Job{Schedule: daily}, Baseline{LastRun: now.Add(-time.Hour), Since: now.Add(-700 * time.Hour)}, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), false},
		{"daily missed over a week of downtime", Job{Schedule: daily}, Baseline{LastRun: now.Add(-7 * 24 * time.Hour)}, time.Date(2026, 2, 23, 0, 0, 0, 0, time.UTC), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slot, due := MissedSlot(c.sch.Schedule, c.b, now)
			if due != c.due || !slot.Equal(c.slot) {
				t.Fatalf("MissedSlot = %v, %v; want %v, %v", slot, due, c.slot, c.due)
			}
		})
	}
}

func TestCatchUp(t *testing.T) {
	cases := []struct {
		name    string
		base    map[string]Baseline
		want    []string
		trigger api.Trigger
	}{
		{"missed hourly slot after a gap", map[string]Baseline{"prune": {LastRun: t0.Add(-3 * time.Hour)}}, []string{"prune"}, api.TriggerCatchUp},
		{"slot not yet due", map[string]Baseline{"prune": {LastRun: t0.Add(-10 * time.Minute)}}, nil, ""},
		{"never run, never seen", nil, nil, ""},
		{"never run, seen before a passed slot (fresh install)", map[string]Baseline{"prune": {Since: t0.Add(-45 * time.Minute)}}, []string{"prune"}, api.TriggerCatchUp},
		{"never run, seen after the last slot", map[string]Baseline{"prune": {Since: t0.Add(-20 * time.Minute)}}, nil, ""},
		{"daily missed, hourly not", map[string]Baseline{"verify": {LastRun: t0.Add(-25 * time.Hour)}, "prune": {LastRun: t0.Add(-20 * time.Minute)}}, []string{"verify"}, api.TriggerCatchUp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder()
			defer close(rec.release)
			s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true), job(t, "verify", "@daily", false)}}, rec.run, Options{Clock: newFakeClock(t0)})
			armed := s.CatchUp(c.base)
			if len(armed) != len(c.want) {
				t.Fatalf("caught up %v, want jobs %v", armed, c.want)
			}
			if s.Busy() != (len(c.want) > 0) {
				t.Fatalf("Busy = %v with %d catch-ups armed", s.Busy(), len(c.want))
			}
			s.Tick(t.Context())
			for _, want := range c.want {
				req := waitStarted(t, rec)
				if req.Job != want || req.Trigger != c.trigger {
					t.Fatalf("started %+v, want %s/%s", req, want, c.trigger)
				}
			}
			noStart(t, rec)
			// Many missed slots collapse into one run; a second CatchUp
			// while it runs arms nothing.
			if again := s.CatchUp(c.base); len(again) != 0 {
				t.Fatalf("second catch-up armed %v while the first runs", again)
			}
			if s.Tick(t.Context()); rec.count() != len(c.want) {
				t.Fatalf("%d runs, want %d", rec.count(), len(c.want))
			}
		})
	}
}

func TestCatchUpJitter(t *testing.T) {
	const jitter = 10 * time.Minute
	cases := []struct {
		name  string
		spec  string
		draw  time.Duration // every draw
		start time.Duration // after t0
	}{
		// The catch-up waits for its jitter draw; the daemon must stay up.
		{"delayed by the draw", "@daily", 4 * time.Minute, 4 * time.Minute},
		{"no delay", "@daily", 0, 0},
		// A regular slot before the draw starts the run (still a catch-up).
		{"regular slot first", "*/2 * * * *", 9 * time.Minute, 2 * time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := newFakeClock(t0)
			rec := newRecorder()
			defer close(rec.release)
			s := New(Config{Jobs: []Job{job(t, "verify", c.spec, false)}, Jitter: jitter}, rec.run, Options{
				Clock: clk, Jitter: func(time.Duration) time.Duration { return c.draw },
			})
			if c.spec == "*/2 * * * *" {
				// The regular next slot is 10:32 + draw; make it 10:32.
				s.mu.Lock()
				s.jobs["verify"].next = t0.Add(2 * time.Minute)
				s.mu.Unlock()
			}
			if armed := s.CatchUp(map[string]Baseline{"verify": {LastRun: t0.Add(-30 * time.Hour)}}); len(armed) != 1 {
				t.Fatalf("armed %v", armed)
			}
			if c.start > 0 {
				s.Tick(t.Context())
				noStart(t, rec)
				if !s.Busy() || !StayUp(s.Jobs(), clk.Now(), 0) {
					t.Fatal("an armed catch-up must keep an idle-exiting daemon up")
				}
				clk.Set(t0.Add(c.start - time.Second))
				s.Tick(t.Context())
				noStart(t, rec)
			}
			clk.Set(t0.Add(c.start))
			s.Tick(t.Context())
			if req := waitStarted(t, rec); req.Trigger != api.TriggerCatchUp {
				t.Fatalf("started %+v, want a catch-up", req)
			}
			if j := s.Jobs()[0]; j.CatchUp || !j.Next.After(clk.Now()) {
				t.Fatalf("after the catch-up: %+v", j)
			}
		})
	}
}

// TestManualRunCoversCatchUp: a manual run that starts while a catch-up
// waits for its jitter replaces it; a dry run does not.
func TestManualRunCoversCatchUp(t *testing.T) {
	for _, dry := range []bool{false, true} {
		clk := newFakeClock(t0)
		rec := newRecorder()
		s := New(Config{Jobs: []Job{job(t, "verify", "@daily", false)}, Jitter: time.Hour}, rec.run, Options{
			Clock: clk, Jitter: func(time.Duration) time.Duration { return 30 * time.Minute },
		})
		s.CatchUp(map[string]Baseline{"verify": {LastRun: t0.Add(-48 * time.Hour)}})
		if _, err := s.Trigger("verify", dry); err != nil {
			t.Fatal(err)
		}
		s.Tick(t.Context())
		if req := waitStarted(t, rec); req.Trigger != api.TriggerManual {
			t.Fatalf("started %+v", req)
		}
		if j := s.Jobs()[0]; j.CatchUp != dry {
			t.Fatalf("dry run %v: catch-up still armed = %v", dry, j.CatchUp)
		}
		close(rec.release)
	}
}

func TestStayUp(t *testing.T) {
	now := t0
	run := &Request{ID: "x"}
	cases := []struct {
		name    string
		jobs    []JobState
		horizon time.Duration
		want    bool
	}{
		{"nothing scheduled", []JobState{{}}, time.Minute, false},
		{"next beyond the horizon", []JobState{{Next: now.Add(100 * time.Second)}}, 20 * time.Second, false},
		{"next within the horizon", []JobState{{Next: now.Add(20 * time.Second)}}, 20 * time.Second, true},
		{"next overdue", []JobState{{Next: now.Add(-time.Second)}}, 0, true},
		{"running", []JobState{{Running: run, Next: now.Add(time.Hour)}}, time.Second, true},
		{"queued", []JobState{{Queued: 1}}, time.Second, true},
		{"catch-up armed far ahead", []JobState{{CatchUp: true, Next: now.Add(14 * time.Minute)}}, 20 * time.Second, true},
		{"one of several", []JobState{{Next: now.Add(time.Hour)}, {Next: now.Add(5 * time.Second)}}, 20 * time.Second, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := StayUp(c.jobs, now, c.horizon); got != c.want {
				t.Fatalf("StayUp = %v, want %v", got, c.want)
			}
		})
	}
}

func TestPayloadOfRunStart(t *testing.T) {
	rec := newRecorder()
	defer close(rec.release)
	s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true)}, Payload: "A"}, rec.run, Options{Clock: newFakeClock(t0)})
	if _, err := s.Trigger("prune", false); err != nil {
		t.Fatal(err)
	}
	// Reconfigured before the queued run starts: it gets the new payload.
	s.Reconfigure(Config{Jobs: []Job{job(t, "prune", "@hourly", true)}, Payload: "B"})
	s.Tick(t.Context())
	if req := waitStarted(t, rec); req.Payload != "B" {
		t.Fatalf("payload %v, want B", req.Payload)
	}
}

func TestMutualExclusion(t *testing.T) {
	rec := newRecorder("prune", "volumes")
	s := New(Config{Jobs: []Job{
		job(t, "prune", "@hourly", true), job(t, "volumes", "@weekly", true), job(t, "refresh", "@daily", false),
	}}, rec.run, Options{Clock: newFakeClock(t0)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if _, err := s.Trigger("prune", false); err != nil {
		t.Fatal(err)
	}
	if r := waitStarted(t, rec); r.Job != "prune" {
		t.Fatalf("started %s", r.Job)
	}
	if _, err := s.Trigger("volumes", false); err != nil {
		t.Fatal(err)
	}
	noStart(t, rec) // volumes waits for prune
	if got := s.Jobs()[1].Queued; got != 1 {
		t.Fatalf("volumes queued = %d, want 1", got)
	}
	// A non-mutating job and a dry run are not held back.
	if _, err := s.Trigger("refresh", false); err != nil {
		t.Fatal(err)
	}
	if r := waitStarted(t, rec); r.Job != "refresh" {
		t.Fatalf("started %s, want refresh", r.Job)
	}
	rec.release <- struct{}{} // ends one of prune/refresh
	rec.release <- struct{}{} // ends the other
	if r := waitStarted(t, rec); r.Job != "volumes" {
		t.Fatalf("started %s, want volumes", r.Job)
	}
	if _, err := s.Trigger("prune", true); err != nil {
		t.Fatal(err)
	}
	if r := waitStarted(t, rec); r.Job != "prune" || !r.DryRun {
		t.Fatalf("started %+v, want prune dry run", r)
	}
	close(rec.release)
	if rec.maxMut != 1 {
		t.Fatalf("max concurrent mutating runs = %d, want 1", rec.maxMut)
	}
}

func TestTimeoutAndPanic(t *testing.T) {
	var calls atomic.Int32
	errs := make(chan error, 1)
	run := func(ctx context.Context, req Request) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
		<-ctx.Done()
		errs <- ctx.Err()
	}
	s := New(Config{Jobs: []Job{job(t, "verify", "@daily", false)}, Timeout: 50 * time.Millisecond}, run, Options{Clock: newFakeClock(t0)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := s.Trigger("verify", false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for (calls.Load() < 1 || s.Busy()) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// After the panic the job is free again, and the next run times out.
	if _, err := s.Trigger("verify", false); err != nil {
		t.Fatalf("trigger after panic: %v", err)
	}
	select {
	case err := <-errs:
		if err != context.DeadlineExceeded {
			t.Fatalf("run ended with %v, want deadline exceeded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not time out")
	}
}

func TestReconfigureKeepsUnchangedSlots(t *testing.T) {
	clk := newFakeClock(t0)
	draws := 0
	s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true), job(t, "verify", "@daily", false)}, Jitter: time.Minute}, nil,
		Options{Clock: clk, Jitter: func(time.Duration) time.Duration { draws++; return time.Duration(draws) * time.Second }})
	before := s.Jobs()
	s.Reconfigure(Config{Jobs: []Job{job(t, "prune", "@hourly", true), job(t, "verify", "@every 5m", false)}, Jitter: time.Minute})
	after := s.Jobs()
	if !after[0].Next.Equal(before[0].Next) {
		t.Fatalf("unchanged job moved: %v -> %v", before[0].Next, after[0].Next)
	}
	if want := t0.Add(5 * time.Minute); after[1].Next.Before(want) || !after[1].Next.Before(want.Add(time.Minute)) {
		t.Fatalf("changed job next = %v, want ~%v", after[1].Next, want)
	}
}
