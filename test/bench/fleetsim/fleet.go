package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/scheduler"
)

// Model is the simulated fleet.
type Model struct {
	Hosts      int
	Refs       int           // tagged references per host, all on one registry
	Latency    time.Duration // per request
	BootSpread time.Duration // the hosts boot within this after an outage
	Seed       uint64
}

// Epoch times of the simulation (UTC; every host in one time zone, the
// worst case: their daily slots coincide).
var (
	// booted is when the daemons start on the steady day.
	booted = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// outageEnd is when the hosts start booting after a fleet-wide outage
	// that covered the next day's slot.
	outageEnd = time.Date(2026, 3, 3, 8, 0, 0, 0, time.UTC)
)

// Result is one simulation's figures.
type Result struct {
	Model  Model
	Jitter time.Duration
	Pacing Pacing        // one host's run on the wire
	Run    time.Duration // one host's run, ping included
	Plan   PerTag        // one host's run, from the planner
	Slot   time.Time     // the steady day's slot

	Starts      []time.Duration // each host's run start after the slot
	Steady      []int           // arrivals per second after the slot
	SteadyStats Stats
	Fine        Stats // the steady window at 100 ms
	SmoothStats Stats // what-if: every request jittered alone
	HostPeak    int   // one host's arrivals in its busiest second

	CatchUp      []int // arrivals per second after the first possible boot
	CatchUpStats Stats
	CatchUpTo    time.Duration // end of the catch-up window (CatchUpWindow)
	CatchUpFirst time.Duration // first and last catch-up run start
	CatchUpLast  time.Duration
}

// Simulate runs the steady day and the outage catch-up of m under p.
func Simulate(ctx context.Context, p *policy.Policy, m Model) (*Result, error) {
	cfg := refreshConfig(p)
	plan, err := PlanRun(m.Refs, p.Refresh)
	if err != nil {
		return nil, err
	}
	r := &Result{Model: m, Jitter: cfg.Jitter, Plan: plan, Pacing: PacingOf(p.Refresh, m.Latency)}
	n := plan.Head + plan.Get
	offsets := Offsets(n, r.Pacing)
	r.Run = RunLength(n, r.Pacing)
	r.HostPeak = slices.Max(Bin([]time.Duration{0}, offsets, time.Second))

	r.Slot = cfg.Jobs[0].Schedule.Next(booted)
	rel, err := steady(ctx, cfg, m, r.Slot)
	if err != nil {
		return nil, err
	}
	r.Starts = rel
	r.Steady = Bin(rel, offsets, time.Second)
	r.SteadyStats = Summarize(r.Steady, WindowBins(cfg.Jitter, r.Run, time.Second))
	fine := 100 * time.Millisecond
	r.Fine = Summarize(Bin(rel, offsets, fine), WindowBins(cfg.Jitter, r.Run, fine))
	if cfg.Jitter > 0 {
		r.SmoothStats = Summarize(Smooth(m.Hosts*n, cfg.Jitter, time.Second, m.Seed), WindowBins(cfg.Jitter, 0, time.Second))
	}

	_, cstarts, err := CatchUpStarts(ctx, cfg, m.Hosts, outageEnd, m.BootSpread, r.Slot, m.Seed+1)
	if err != nil {
		return nil, err
	}
	crel := Rel(cstarts, outageEnd)
	r.CatchUpFirst, r.CatchUpLast = slices.Min(crel), slices.Max(crel)
	_, r.CatchUpTo = CatchUpWindow(m.BootSpread, cfg.Jitter, r.Run)
	r.CatchUp = Bin(crel, offsets, time.Second)
	r.CatchUpStats = Summarize(r.CatchUp, WindowBins(m.BootSpread+cfg.Jitter, r.Run, time.Second))
	if got := r.CatchUpStats.Total; got != m.Hosts*n {
		return nil, fmt.Errorf("catch-up window holds %d of %d requests", got, m.Hosts*n)
	}
	return r, nil
}

// steady returns the refresh starts of m's hosts relative to slot,
// checked to lie within the jitter window.
func steady(ctx context.Context, cfg scheduler.Config, m Model, slot time.Time) ([]time.Duration, error) {
	starts, err := SteadyStarts(ctx, cfg, m.Hosts, booted, m.Seed)
	if err != nil {
		return nil, err
	}
	rel := Rel(starts, slot)
	for i, d := range rel {
		if d < 0 || d >= max(cfg.Jitter, time.Nanosecond) {
			return nil, fmt.Errorf("host %d starts %s after its slot, outside [0, %s)", i, d, cfg.Jitter)
		}
	}
	return rel, nil
}

// Sizing is the jitter a fleet needs for a registry serving Capacity
// requests per second (not to be confused with [refresh] rate, which
// paces one host).
type Sizing struct {
	Hosts, Capacity int
	// Floor is hosts × requests per run / Capacity: the jitter if the load
	// were perfectly even (peak factor 1).
	Floor time.Duration
	// Jitter is the smallest jitter found (whole minutes, to within 2 %)
	// whose simulated per-second peak is at most Capacity; Stats are its
	// figures. Over says even a jitter of one period was not enough.
	Jitter time.Duration
	Stats  Stats
	Over   bool
}

// Factor is the peak factor k in jitter ≥ k × hosts × requests / rate.
func (s Sizing) Factor() float64 { return float64(s.Jitter) / float64(s.Floor) }

// JitterFor searches the smallest jitter keeping the simulated per-second
// peak of m's steady day under p within capacity, up to one period of the
// refresh schedule.
func JitterFor(ctx context.Context, p *policy.Policy, m Model, capacity int) (Sizing, error) {
	plan, err := PlanRun(m.Refs, p.Refresh)
	if err != nil {
		return Sizing{}, err
	}
	n := plan.Head + plan.Get
	pc := PacingOf(p.Refresh, m.Latency)
	offsets := Offsets(n, pc)
	run := RunLength(n, pc)
	cfg := refreshConfig(p)
	slot := cfg.Jobs[0].Schedule.Next(booted)
	period := cfg.Jobs[0].Schedule.Next(slot).Sub(slot)
	sz := Sizing{Hosts: m.Hosts, Capacity: capacity, Floor: time.Duration(float64(m.Hosts*n) / float64(capacity) * float64(time.Second))}
	peak := func(j time.Duration) (Stats, error) {
		cfg.Jitter = j
		rel, err := steady(ctx, cfg, m, slot)
		if err != nil {
			return Stats{}, err
		}
		return Summarize(Bin(rel, offsets, time.Second), WindowBins(j, run, time.Second)), nil
	}
	// Upwards from the floor, scaling by the measured excess, then bisect.
	lo, hi := time.Duration(0), max(sz.Floor.Round(time.Minute), time.Minute)
	var hiStats Stats
	for {
		st, err := peak(hi)
		if err != nil {
			return Sizing{}, err
		}
		if st.Peak <= capacity {
			hiStats = st
			break
		}
		if hi >= period {
			return Sizing{Hosts: m.Hosts, Capacity: capacity, Floor: sz.Floor, Jitter: hi, Stats: st, Over: true}, nil
		}
		lo = hi
		hi = min(period, max(hi+time.Minute, time.Duration(float64(hi)*float64(st.Peak)/float64(capacity)).Round(time.Minute)))
	}
	for hi-lo > max(time.Minute, hi/50) {
		mid := (lo + (hi-lo)/2).Round(time.Minute)
		if mid <= lo || mid >= hi {
			break
		}
		st, err := peak(mid)
		if err != nil {
			return Sizing{}, err
		}
		if st.Peak <= capacity {
			hi, hiStats = mid, st
		} else {
			lo = mid
		}
	}
	sz.Jitter, sz.Stats = hi, hiStats
	return sz, nil
}
