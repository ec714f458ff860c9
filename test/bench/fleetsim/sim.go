package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/stowage/stowage/jobs/refresh"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/scheduler"
)

// clock is the fake time source of one simulated daemon: the simulation
// moves it to each start the scheduler computed and calls Tick there.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// After is never waited on: the simulation calls Tick itself.
func (c *clock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

// jitterFrom is the scheduler's default jitter (a uniform delay in [0, max))
// drawn from a seeded source, so a simulation is repeatable.
func jitterFrom(r *rand.Rand) func(time.Duration) time.Duration {
	return func(max time.Duration) time.Duration {
		if max <= 0 {
			return 0
		}
		return time.Duration(r.Int64N(int64(max)))
	}
}

// refreshConfig is the scheduler configuration of the refresh job under p,
// the only job that talks to registries. The other jobs cannot delay it: the
// scheduler serializes mutating runs only, and refresh mutates only when a
// mode is pull (then a prune run in progress could hold it back; not
// modelled).
func refreshConfig(p *policy.Policy) scheduler.Config {
	s := p.Schedule
	return scheduler.Config{
		Jitter: s.Jitter.Duration,
		Jobs:   []scheduler.Job{{Name: report.JobRefresh, Spec: s.Refresh.Spec, Schedule: s.Refresh.Sched}},
	}
}

// daemon is one host's scheduler with its fake clock.
type daemon struct {
	clk     *clock
	s       *scheduler.Scheduler
	started chan scheduler.Request
}

func newDaemon(cfg scheduler.Config, at time.Time, rng *rand.Rand) *daemon {
	d := &daemon{clk: &clock{now: at}, started: make(chan scheduler.Request, 1)}
	d.s = scheduler.New(cfg, func(_ context.Context, req scheduler.Request) { d.started <- req },
		scheduler.Options{Clock: d.clk, Jitter: jitterFrom(rng), NewID: func(string, time.Time) string { return "run" }})
	return d
}

// next moves the clock to the scheduler's next due start, ticks there and
// returns the run that started.
func (d *daemon) next(ctx context.Context) (scheduler.Request, error) {
	due := d.s.NextDue()
	if due.IsZero() {
		return scheduler.Request{}, fmt.Errorf("nothing scheduled")
	}
	d.clk.now = due
	d.s.Tick(ctx)
	select {
	case req := <-d.started:
		return req, nil
	case <-time.After(10 * time.Second):
		return scheduler.Request{}, fmt.Errorf("no run started at %s", due)
	}
}

// hostRNG is host i's random source: the daemons of a fleet draw their
// jitter independently (each process seeds its own), which the simulation
// reproduces with one stream per host.
func hostRNG(seed uint64, host int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, uint64(host)))
}

// SteadyStarts returns, for each of hosts daemons started at from, when its
// first scheduled refresh run starts, as computed by the real scheduler.
func SteadyStarts(ctx context.Context, cfg scheduler.Config, hosts int, from time.Time, seed uint64) ([]time.Time, error) {
	out := make([]time.Time, hosts)
	for i := range out {
		d := newDaemon(cfg, from, hostRNG(seed, i))
		req, err := d.next(ctx)
		if err != nil {
			return nil, fmt.Errorf("host %d: %w", i, err)
		}
		if req.Trigger != api.TriggerSchedule {
			return nil, fmt.Errorf("host %d: run trigger %q, want schedule", i, req.Trigger)
		}
		out[i] = req.Queued
	}
	return out, nil
}

// CatchUpStarts returns, for each of hosts daemons booting uniformly within
// bootSpread after bootFrom (an outage covered their slot; lastRun was the
// last refresh run), when its catch-up run starts: the daemon's catch-up
// rule run by the real scheduler (CatchUp at boot, then Tick).
func CatchUpStarts(ctx context.Context, cfg scheduler.Config, hosts int, bootFrom time.Time, bootSpread time.Duration, lastRun time.Time, seed uint64) (boots, starts []time.Time, err error) {
	boots, starts = make([]time.Time, hosts), make([]time.Time, hosts)
	for i := range starts {
		rng := hostRNG(seed, i)
		boots[i] = bootFrom.Add(time.Duration(rng.Int64N(int64(bootSpread))))
		d := newDaemon(cfg, boots[i], rng)
		armed := d.s.CatchUp(map[string]scheduler.Baseline{report.JobRefresh: {LastRun: lastRun, Since: lastRun}})
		if len(armed) != 1 {
			return nil, nil, fmt.Errorf("host %d: no catch-up armed (last run %s, boot %s)", i, lastRun, boots[i])
		}
		req, err := d.next(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("host %d: %w", i, err)
		}
		if req.Trigger != api.TriggerCatchUp {
			return nil, nil, fmt.Errorf("host %d: run trigger %q, want catch-up", i, req.Trigger)
		}
		starts[i] = req.Queued
	}
	return boots, starts, nil
}

// PerTag is what one refresh run asks of the registry, per planned tag.
type PerTag struct {
	Tags    int // tags the planner picked
	Head    int // HEAD requests in the run
	Get     int // GETs of manifest lists
	Drifted int
}

// PlanRun counts the requests one host's refresh run makes when nothing
// changed at the registry, from the real planner: refs tagged references
// (every other one a multi-arch image known by its list digest, as podman
// records it), each answered by a HEAD returning the digest the image was
// pulled at. Per target the run sends one HEAD, plus one GET when NeedsList
// says the HEAD is not enough.
func PlanRun(refs int, p policy.Refresh) (PerTag, error) {
	images := make([]refresh.LocalImage, refs)
	remote := map[string]refresh.Remote{}
	multi := map[string]bool{}
	for i := range images {
		id := fmt.Sprintf("%064x", i+1)
		img := refresh.LocalImage{ID: id, Names: []string{fmt.Sprintf("registry.example.com/fleet/app%03d:v1", i)},
			Digest: "sha256:" + id, Digests: []string{"sha256:" + id}, OS: "linux", Architecture: "amd64"}
		r := refresh.Remote{Digest: img.Digest}
		if i%2 == 1 {
			list := fmt.Sprintf("sha256:%064x", 1<<32+i)
			img.Digests = append(img.Digests, list)
			r.Digest = list
		}
		images[i] = img
		ref := refresh.NormalizeReference(img.Names[0])
		remote[ref], multi[ref] = r, i%2 == 1
	}
	targets, skipped := refresh.Plan(images, p)
	if len(skipped) > 0 {
		return PerTag{}, fmt.Errorf("planner skipped %d references: %v", len(skipped), skipped)
	}
	out := PerTag{Tags: len(targets)}
	for _, t := range targets {
		r, ok := remote[t.Reference]
		if !ok {
			return PerTag{}, fmt.Errorf("planner asked for %s, not in the fleet's images", t.Reference)
		}
		out.Head++
		if refresh.NeedsList(t.Image, r.Digest, multi[t.Reference]) {
			out.Get++
		}
		if st, _ := refresh.Classify(t.Image, r); st != refresh.StatusCurrent {
			out.Drifted++
		}
	}
	return out, nil
}

// Pacing is how one host's run sends its requests to a registry, as the
// refresh client does: at most Inflight at once (min(concurrency,
// per_registry) with all of a host's tags on one registry), each taking
// Latency, and none starting before its slot, Interval after the previous
// request's slot ([refresh] rate; 0 = unpaced).
type Pacing struct {
	Inflight int
	Latency  time.Duration
	Interval time.Duration
}

// PacingOf is the pacing of a run under p at latency per request.
func PacingOf(p policy.Refresh, latency time.Duration) Pacing {
	pc := Pacing{Inflight: min(p.Concurrency, p.PerRegistry), Latency: latency}
	if p.Rate > 0 {
		pc.Interval = time.Second / time.Duration(p.Rate)
	}
	return pc
}

// Offsets returns when, after a run's start, its n manifest requests reach
// the registry. The client's single ping (GET /v2/) goes first and takes the
// first slot (at 0); the requests wait for it. Request i's slot is
// max(end of the ping, slot of i-1 + Interval), and it starts at its slot
// or when one of the Inflight requests before it ends, whichever is later
// (the client reserves the slot before it queues for the host's limit).
func Offsets(n int, pc Pacing) []time.Duration {
	inflight := max(pc.Inflight, 1)
	out := make([]time.Duration, n)
	ready, slot := pc.Latency, time.Duration(0)
	for i := range out {
		slot = max(ready, slot+pc.Interval)
		start := slot
		if i >= inflight {
			// Equal latencies: the requests end in the order they started.
			start = max(start, out[i-inflight]+pc.Latency)
		}
		out[i] = start
	}
	return out
}

// RunLength is how long a run of n requests lasts under Offsets.
func RunLength(n int, pc Pacing) time.Duration {
	if n == 0 {
		return pc.Latency
	}
	return Offsets(n, pc)[n-1] + pc.Latency
}

// Bin counts arrivals per bin of width: every host's start (relative to the
// window's start, never negative) plus each offset. The result covers the
// last arrival.
func Bin(starts, offsets []time.Duration, width time.Duration) []int {
	if len(starts) == 0 || len(offsets) == 0 {
		return nil
	}
	last := slices.Max(starts) + slices.Max(offsets)
	bins := make([]int, int(last/width)+1)
	for _, s := range starts {
		for _, o := range offsets {
			bins[(s+o)/width]++
		}
	}
	return bins
}

// Stats summarizes arrivals per bin over a window of a given number of bins.
type Stats struct {
	Total  int
	Bins   int // bins the mean is taken over
	Mean   float64
	Peak   int
	PeakAt int // first bin holding the peak
	P99    int // 99th percentile bin
	Empty  int // bins without arrivals
}

// Ratio is peak/mean (0 without arrivals).
func (s Stats) Ratio() float64 {
	if s.Mean == 0 {
		return 0
	}
	return float64(s.Peak) / s.Mean
}

// Summarize computes Stats over the first window bins of bins (bins past
// the slice count as empty).
func Summarize(bins []int, window int) Stats {
	st := Stats{Bins: window}
	sorted := make([]int, window)
	for i := 0; i < window; i++ {
		v := 0
		if i < len(bins) {
			v = bins[i]
		}
		sorted[i] = v
		st.Total += v
		if v > st.Peak {
			st.Peak, st.PeakAt = v, i
		}
		if v == 0 {
			st.Empty++
		}
	}
	if window == 0 {
		return st
	}
	st.Mean = float64(st.Total) / float64(window)
	slices.Sort(sorted)
	st.P99 = sorted[min(window-1, int(math.Ceil(0.99*float64(window)))-1)]
	return st
}

// WindowBins is the number of bins of width from a window's start to the
// end of the last possible run: starts spread over spread, each run lasting
// run.
func WindowBins(spread, run, width time.Duration) int {
	return int((spread + run + width - 1) / width)
}

// CatchUpWindow bounds the catch-up arrivals after a fleet-wide outage,
// relative to the first possible boot: a host boots within bootSpread, arms
// its catch-up with a delay in [0, jitter) and its run lasts run.
func CatchUpWindow(bootSpread, jitter, run time.Duration) (from, to time.Duration) {
	return 0, bootSpread + jitter + run
}

// Rel returns ts relative to origin.
func Rel(ts []time.Time, origin time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(origin)
	}
	return out
}

// Smooth is the what-if used to show the cost of per-host bursts: the same
// number of requests, each at its own uniform random time in [0, spread),
// as if every request were jittered alone. Not stowage's behaviour.
func Smooth(requests int, spread, width time.Duration, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, math.MaxUint64))
	bins := make([]int, int((spread+width-1)/width))
	for range requests {
		bins[time.Duration(r.Int64N(int64(spread)))/width]++
	}
	return bins
}
