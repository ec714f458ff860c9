package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
)

const ms = time.Millisecond

func TestOffsets(t *testing.T) {
	for _, c := range []struct {
		n    int
		pc   Pacing
		want []time.Duration
		run  time.Duration
	}{
		// Unpaced: waves of Inflight after the ping.
		{5, Pacing{2, 50 * ms, 0}, []time.Duration{50 * ms, 50 * ms, 100 * ms, 100 * ms, 150 * ms}, 200 * ms},
		{3, Pacing{8, 10 * ms, 0}, []time.Duration{10 * ms, 10 * ms, 10 * ms}, 20 * ms},
		{2, Pacing{0, 10 * ms, 0}, []time.Duration{10 * ms, 20 * ms}, 30 * ms}, // inflight clamps to 1
		{0, Pacing{4, 10 * ms, 0}, []time.Duration{}, 10 * ms},                 // the ping alone
		// Paced: the ping took the slot at 0, the next is one interval on.
		{3, Pacing{4, 50 * ms, 100 * ms}, []time.Duration{100 * ms, 200 * ms, 300 * ms}, 350 * ms},
		// A slot before the ping's end waits for it; later ones follow it.
		{3, Pacing{4, 50 * ms, 20 * ms}, []time.Duration{50 * ms, 70 * ms, 90 * ms}, 140 * ms},
		// The host's limit holds a request past its slot; the slots do not
		// move (the client reserves them first).
		{3, Pacing{1, 50 * ms, 20 * ms}, []time.Duration{50 * ms, 100 * ms, 150 * ms}, 200 * ms},
		{4, Pacing{2, 100 * ms, 30 * ms}, []time.Duration{100 * ms, 130 * ms, 200 * ms, 230 * ms}, 330 * ms},
	} {
		if got := Offsets(c.n, c.pc); !slices.Equal(got, c.want) {
			t.Errorf("Offsets(%d, %+v) = %v, want %v", c.n, c.pc, got, c.want)
		}
		if got := RunLength(c.n, c.pc); got != c.run {
			t.Errorf("RunLength(%d, %+v) = %s, want %s", c.n, c.pc, got, c.run)
		}
	}
	// The default policy's run of 50 tags: one request every 100 ms after
	// the ping; unpaced, 4 in flight, 13 waves after the ping.
	p := policy.Default()
	if got := RunLength(50, PacingOf(p.Refresh, 50*ms)); got != 5050*ms {
		t.Errorf("default run = %s, want 5.05s", got)
	}
	p.Refresh.Rate = 0
	if got := RunLength(50, PacingOf(p.Refresh, 50*ms)); got != 700*ms {
		t.Errorf("unpaced default run = %s, want 700ms", got)
	}
}

func TestBin(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		name    string
		starts  []time.Duration
		offsets []time.Duration
		width   time.Duration
		want    []int
	}{
		{"none", nil, []time.Duration{0}, s, nil},
		{"one host in one bin", []time.Duration{0}, []time.Duration{100 * ms, 200 * ms}, s, []int{2}},
		{"a burst straddling a second", []time.Duration{900 * ms}, []time.Duration{0, 50 * ms, 100 * ms, 150 * ms}, s, []int{2, 2}},
		{"two hosts, a gap", []time.Duration{0, 3 * s}, []time.Duration{0}, s, []int{1, 0, 0, 1}},
		{"edge belongs to the next bin", []time.Duration{s}, []time.Duration{0}, s, []int{0, 1}},
		{"100 ms bins", []time.Duration{0}, []time.Duration{50 * ms, 150 * ms, 160 * ms}, 100 * ms, []int{1, 2}},
	} {
		got := Bin(c.starts, c.offsets, c.width)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Bin = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		name   string
		bins   []int
		window int
		want   Stats
		ratio  float64
	}{
		{"flat", []int{4, 4, 4, 4}, 4, Stats{Total: 16, Bins: 4, Mean: 4, Peak: 4, PeakAt: 0, P99: 4}, 1},
		{"one spike", []int{1, 1, 10, 0}, 4, Stats{Total: 12, Bins: 4, Mean: 3, Peak: 10, PeakAt: 2, P99: 10, Empty: 1}, 10.0 / 3},
		// The window, not the slice, sets the mean: quiet seconds count.
		{"window past the bins", []int{6, 6}, 4, Stats{Total: 12, Bins: 4, Mean: 3, Peak: 6, PeakAt: 0, P99: 6, Empty: 2}, 2},
		{"nothing", nil, 3, Stats{Bins: 3, Empty: 3}, 0},
	} {
		got := Summarize(c.bins, c.window)
		if got != c.want {
			t.Errorf("%s: Summarize = %+v, want %+v", c.name, got, c.want)
		}
		if r := got.Ratio(); r != c.ratio {
			t.Errorf("%s: Ratio = %v, want %v", c.name, r, c.ratio)
		}
	}
	// p99 of 1..100 is 99.
	var bins []int
	for i := 1; i <= 100; i++ {
		bins = append(bins, i)
	}
	if got := Summarize(bins, 100).P99; got != 99 {
		t.Errorf("p99 of 1..100 = %d, want 99", got)
	}
}

func TestWindows(t *testing.T) {
	if got := WindowBins(15*time.Minute, 700*ms, time.Second); got != 901 {
		t.Errorf("WindowBins(15m, 700ms, 1s) = %d, want 901", got)
	}
	if got := WindowBins(0, 700*ms, time.Second); got != 1 {
		t.Errorf("WindowBins(0, 700ms, 1s) = %d, want 1", got)
	}
	from, to := CatchUpWindow(5*time.Minute, 15*time.Minute, 700*ms)
	if from != 0 || to != 20*time.Minute+700*ms {
		t.Errorf("CatchUpWindow = [%s, %s), want [0, 20m0.7s)", from, to)
	}
}

// PlanRun derives the requests per tag from the real planner: one HEAD per
// tag, no GET, nothing drifted, when the registry still answers the digests
// the images were pulled at.
func TestPlanRunUnchanged(t *testing.T) {
	p := policy.Default()
	got, err := PlanRun(50, p.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	if want := (PerTag{Tags: 50, Head: 50}); got != want {
		t.Errorf("PlanRun(50) = %+v, want %+v", got, want)
	}
	// A policy switching the fleet's references off plans nothing.
	off := p.Refresh
	off.Mode = policy.RefreshOff
	if _, err := PlanRun(3, off); err == nil {
		t.Error("PlanRun with mode off: no error for the skipped references")
	}
}

// The scheduler draws each host's delay on its own: starts lie in the
// jitter window after the slot, differ between hosts, and repeat for a seed.
func TestSteadyStarts(t *testing.T) {
	ctx := context.Background()
	p := policy.Default()
	cfg := refreshConfig(p)
	slot := cfg.Jobs[0].Schedule.Next(booted)
	a, err := SteadyStarts(ctx, cfg, 200, booted, 7)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SteadyStarts(ctx, cfg, 200, booted, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(a, b, time.Time.Equal) {
		t.Error("two simulations with one seed differ")
	}
	seen := map[time.Time]bool{}
	for i, s := range a {
		if d := s.Sub(slot); d < 0 || d >= cfg.Jitter {
			t.Errorf("host %d starts %s after the slot, outside [0, %s)", i, d, cfg.Jitter)
		}
		seen[s] = true
	}
	if len(seen) < 190 {
		t.Errorf("only %d distinct starts among 200 hosts", len(seen))
	}
}

// After an outage every host runs once: after its boot, within one jitter
// of it, so the fleet's catch-ups lie in CatchUpWindow.
func TestCatchUpStartsWithinWindow(t *testing.T) {
	ctx := context.Background()
	cfg := refreshConfig(policy.Default())
	slot := cfg.Jobs[0].Schedule.Next(booted)
	spread := 5 * time.Minute
	boots, starts, err := CatchUpStarts(ctx, cfg, 500, outageEnd, spread, slot, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, to := CatchUpWindow(spread, cfg.Jitter, 0)
	var late int
	for i := range starts {
		b, s := boots[i].Sub(outageEnd), starts[i].Sub(outageEnd)
		if b < 0 || b >= spread {
			t.Errorf("host %d boots at +%s, outside [0, %s)", i, b, spread)
		}
		if d := starts[i].Sub(boots[i]); d < 0 || d >= cfg.Jitter {
			t.Errorf("host %d catches up %s after booting, outside [0, %s)", i, d, cfg.Jitter)
		}
		if s >= to {
			t.Errorf("host %d catches up at +%s, past the window's end %s", i, s, to)
		}
		if s >= cfg.Jitter {
			late++
		}
	}
	// The boot spread widens the window past one jitter.
	if late == 0 {
		t.Errorf("no catch-up after +%s: the boot spread was not applied", cfg.Jitter)
	}
}

// guardJitter is the spread README's "Fleets" section documents for the
// default policy.
const guardJitter = 15 * time.Minute

// guardLimit is the peak factor the default policy must keep: README's
// criterion is 2; the default measures 1.37–1.44 over seeds 1–5, while
// without its pacing (rate = 0) it measures 1.85–2.07, so a limit between
// the two catches losing the pacing on every seed, not only on an unlucky
// one.
const guardLimit = 1.6

// peakFactor simulates 10,000 hosts × 50 references under p with seed and
// returns the per-second peak against the mean of an even spread over
// guardJitter (not the window's own mean, which a jitter of 0 would shrink
// with the peak).
func peakFactor(t *testing.T, p *policy.Policy, seed uint64) float64 {
	t.Helper()
	m := Model{Hosts: 10000, Refs: 50, Latency: 50 * ms, BootSpread: 5 * time.Minute, Seed: seed}
	cfg := refreshConfig(p)
	slot := cfg.Jobs[0].Schedule.Next(booted)
	rel, err := steady(context.Background(), cfg, m, slot)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRun(m.Refs, p.Refresh)
	if err != nil {
		t.Fatal(err)
	}
	n := plan.Head + plan.Get
	bins := Bin(rel, Offsets(n, PacingOf(p.Refresh, m.Latency)), time.Second)
	mean := float64(m.Hosts*n) / guardJitter.Seconds()
	return float64(slices.Max(bins)) / mean
}

// The default policy spreads a fleet's daily refresh: the per-second peak
// stays within guardLimit × an even spread over 15 minutes, for several
// seeds. The guard bites: it fails for a jitter of 0 (every host at the
// slot) and for the default jitter without the rate pacing (each host's
// HEADs as one burst).
func TestDefaultPolicyFleetPeak(t *testing.T) {
	p := policy.Default()
	noJitter := *p
	noJitter.Schedule.Jitter.Duration = 0
	for seed := uint64(1); seed <= 3; seed++ {
		if f := peakFactor(t, p, seed); f > guardLimit {
			t.Errorf("default policy (jitter %s, rate %d/s), seed %d: peak = %.2f × the mean of a %s spread, want <= %.2f",
				p.Schedule.Jitter.Duration, p.Refresh.Rate, seed, f, guardJitter, guardLimit)
		}
		if f := peakFactor(t, unpaced(p, p.Refresh.PerRegistry), seed); f <= guardLimit {
			t.Errorf("rate 0, seed %d: peak = %.2f × the mean, want > %.2f (the guard cannot catch losing the pacing)", seed, f, guardLimit)
		}
	}
	if f := peakFactor(t, &noJitter, 1); f <= guardLimit {
		t.Errorf("jitter 0: peak = %.2f × the mean, want > %.2f (the guard cannot fail)", f, guardLimit)
	}
}

// JitterFor finds a jitter whose simulated peak meets the rate, and a
// minute shorter does not (below 50 minutes the search is to the minute).
func TestJitterFor(t *testing.T) {
	p := policy.Default()
	m := Model{Hosts: 100, Refs: 50, Latency: 50 * ms, BootSpread: time.Minute, Seed: 1}
	sz, err := JitterFor(context.Background(), p, m, 100)
	if err != nil {
		t.Fatal(err)
	}
	if sz.Over || sz.Stats.Peak > 100 || sz.Jitter < time.Minute {
		t.Fatalf("JitterFor(100 hosts, 100/s) = %+v", sz)
	}
	if sz.Floor != 50*time.Second {
		t.Errorf("floor = %s, want 50s (100 × 50 / 100)", sz.Floor)
	}
	if sz.Jitter > time.Minute {
		q := *p
		q.Schedule.Jitter.Duration = sz.Jitter - time.Minute
		cfg := refreshConfig(&q)
		rel, err := steady(context.Background(), cfg, m, cfg.Jobs[0].Schedule.Next(booted))
		if err != nil {
			t.Fatal(err)
		}
		if peak := slices.Max(Bin(rel, Offsets(50, PacingOf(p.Refresh, m.Latency)), time.Second)); peak <= 100 {
			t.Errorf("jitter %s already meets 100/s (peak %d), JitterFor said %s", q.Schedule.Jitter.Duration, peak, sz.Jitter)
		}
	}
}
