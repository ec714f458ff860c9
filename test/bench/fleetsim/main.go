// Command fleetsim simulates the registry load of a fleet of stowage hosts
// on one policy (the default, or -jitter to try another): every host's
// refresh start comes from the real scheduler (service/scheduler, its
// jitter and catch-up rule) on a fake clock, every host's requests from the
// real refresh planner (jobs/refresh), and each run's requests reach the
// registry as the refresh client sends them: the policy's concurrency and
// per_registry limits and its [refresh] rate pacing, at a fixed latency.
// What-ifs without the pacing (rate = 0) show what it buys. It writes
// arrivals per second for a steady day and for the catch-up after a
// fleet-wide outage, a jitter sizing table, and a PNG chart (-jitter and
// -rate try other values of the policy's). Deterministic
// for a seed. Run by test/bench/fleet.sh.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/stowage/stowage/policy"
)

func main() {
	m := Model{}
	flag.IntVar(&m.Hosts, "hosts", 10000, "hosts in the fleet")
	flag.IntVar(&m.Refs, "refs", 50, "tagged references per host")
	flag.DurationVar(&m.Latency, "latency", 50*time.Millisecond, "registry latency per request")
	flag.DurationVar(&m.BootSpread, "boot-spread", 5*time.Minute, "the hosts boot within this after an outage")
	flag.Uint64Var(&m.Seed, "seed", 1, "random seed")
	jitter := flag.Duration("jitter", -1, "override the default policy's jitter")
	rate := flag.Int("rate", -1, "override the default policy's [refresh] rate (0 = unpaced)")
	txt := flag.String("txt", "", "write the figures here too")
	pngPath := flag.String("png", "", "write the chart here")
	table := flag.Bool("table", true, "compute the jitter sizing table")
	flag.Parse()
	if err := run(m, *jitter, *rate, *txt, *pngPath, *table); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(1)
	}
}

func run(m Model, jitter time.Duration, rate int, txt, pngPath string, table bool) error {
	if m.Hosts < 1 || m.Refs < 1 || m.Latency <= 0 || m.BootSpread <= 0 {
		return fmt.Errorf("-hosts, -refs, -latency and -boot-spread must be positive")
	}
	ctx := context.Background()
	t0 := time.Now()
	p := policy.Default()
	if jitter >= 0 {
		p.Schedule.Jitter.Duration = jitter
	}
	if rate >= 0 {
		p.Refresh.Rate = rate
	}
	r, err := Simulate(ctx, p, m)
	if err != nil {
		return err
	}
	var seeds []float64
	for s := m.Seed; s < m.Seed+5; s++ {
		ms := m
		ms.Seed = s
		rs, err := Simulate(ctx, p, ms)
		if err != nil {
			return err
		}
		seeds = append(seeds, rs.SteadyStats.Ratio())
	}
	// What-ifs without the pacing: each host's requests go out as fast as
	// per_registry allows (4 in flight by default, or 1).
	variants := []*policy.Policy{p, unpaced(p, p.Refresh.PerRegistry), unpaced(p, 1)}
	whatIfs := make([]*Result, 0, 2)
	for _, q := range variants[1:] {
		rq, err := Simulate(ctx, q, m)
		if err != nil {
			return err
		}
		whatIfs = append(whatIfs, rq)
	}
	var sizes [][]Sizing // per row: one Sizing per variant
	if table {
		for _, n := range []int{100, 1000, 10000, 100000} {
			for _, capacity := range []int{100, 1000} {
				ms := m
				ms.Hosts = n
				row := make([]Sizing, len(variants))
				for i, q := range variants {
					if row[i], err = JitterFor(ctx, q, ms, capacity); err != nil {
						return err
					}
				}
				sizes = append(sizes, row)
			}
		}
	}
	var b bytes.Buffer
	writeReport(&b, p, r, whatIfs, seeds, sizes, time.Since(t0))
	os.Stdout.Write(b.Bytes())
	if txt != "" {
		if err := os.WriteFile(txt, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if pngPath != "" {
		var img bytes.Buffer
		err := Plot(&img, []Panel{
			{Title: fmt.Sprintf("steady day: %d hosts x %d refs, jitter %s, rate %d/s, seconds after the @daily slot", m.Hosts, m.Refs, r.Jitter, p.Refresh.Rate), Bins: r.Steady, Mean: r.SteadyStats.Mean},
			{Title: fmt.Sprintf("what-if, the same day unpaced (rate = 0, per_registry = %d)", p.Refresh.PerRegistry), Bins: whatIfs[0].Steady, Mean: whatIfs[0].SteadyStats.Mean},
			{Title: fmt.Sprintf("catch-up after an outage: boots within %s, seconds after the first boot", m.BootSpread), Bins: r.CatchUp, Mean: r.CatchUpStats.Mean},
		})
		if err != nil {
			return err
		}
		if err := os.WriteFile(pngPath, img.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// unpaced is p with [refresh] rate = 0 and per_registry set to perRegistry.
func unpaced(p *policy.Policy, perRegistry int) *policy.Policy {
	q := *p
	q.Refresh.Rate = 0
	q.Refresh.PerRegistry = perRegistry
	return &q
}

func writeReport(w io.Writer, p *policy.Policy, r *Result, whatIfs []*Result, seeds []float64, sizes [][]Sizing, took time.Duration) {
	m, st, cu := r.Model, r.SteadyStats, r.CatchUpStats
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(w, "# fleet registry load, simulated: %d hosts x %d references on one registry, %s per request, seed %d; %.1f s, %s\n",
		m.Hosts, m.Refs, m.Latency, m.Seed, took.Seconds(), fmt.Sprintf("%d CPUs", runtime.NumCPU()))
	fmt.Fprintf(w, "# policy: refresh %q, jitter %s, concurrency %d, per_registry %d, rate %d/s (start times: service/scheduler on a fake clock; requests: jobs/refresh planner, sent as the refresh client paces them)\n",
		p.Schedule.Refresh.Spec, r.Jitter, p.Refresh.Concurrency, p.Refresh.PerRegistry, p.Refresh.Rate)
	n := r.Plan.Head + r.Plan.Get
	fmt.Fprintf(w, "one run, nothing changed: %d tags planned -> %d HEAD, %d GET, %d drifted = %.2f HEAD and %.2f GET per tag per period (+1 ping GET /v2/ per run)\n",
		r.Plan.Tags, r.Plan.Head, r.Plan.Get, r.Plan.Drifted, float64(r.Plan.Head)/float64(r.Plan.Tags), float64(r.Plan.Get)/float64(r.Plan.Tags))
	fmt.Fprintf(w, "one run on the wire: %d requests, %s\n", n, runLine(r))
	fmt.Fprintf(w, "\nsteady day, arrivals per second over the %d s after the slot (jitter + one run):\n", st.Bins)
	fmt.Fprintf(w, "  total %d  mean %.1f/s  peak %d/s at +%ds  p99 %d/s  empty seconds %d  peak/mean %.2f\n", st.Total, st.Mean, st.Peak, st.PeakAt, st.P99, st.Empty, st.Ratio())
	fmt.Fprintf(w, "  peak/mean with seeds %d..%d: %s\n", m.Seed, m.Seed+uint64(len(seeds))-1, floats(seeds))
	fmt.Fprintf(w, "  at 100 ms resolution: mean %.1f  peak %d  peak/mean %.2f\n", r.Fine.Mean, r.Fine.Peak, r.Fine.Ratio())
	fmt.Fprintf(w, "  what-if, every request jittered alone (not stowage): peak %d/s  peak/mean %.2f\n", r.SmoothStats.Peak, r.SmoothStats.Ratio())
	// Hosts start as a Poisson process; a second holds the requests of the
	// hosts whose run overlaps it, about lambda x max(run, 1 s) of them.
	lambda := float64(m.Hosts) / r.Jitter.Seconds()
	active := lambda * max(r.Run.Seconds(), 1)
	z := math.Sqrt(2 * math.Log(float64(st.Bins)))
	fmt.Fprintf(w, "  why: %.1f hosts start per second on average (Poisson), each run %s long, so ~%.1f runs overlap each second;\n"+
		"       the busiest of %d seconds holds ~ mean + sqrt(2 ln %d) sd: peak/mean ~ 1 + %.2f/sqrt(%.1f) = %.2f\n",
		lambda, r.Run, active, st.Bins, st.Bins, z, active, 1+z/math.Sqrt(active))
	for _, q := range whatIfs {
		qs := q.SteadyStats
		fmt.Fprintf(w, "  what-if rate = 0 (unpaced), per_registry = %d: %s; peak %d/s  peak/mean %.2f\n",
			q.Pacing.Inflight, runLine(q), qs.Peak, qs.Ratio())
	}
	fmt.Fprintf(w, "  criterion peak/mean <= 2 at per-second resolution (the policy above): %s\n", verdict(st.Ratio() <= 2))
	fmt.Fprintf(w, "\ncatch-up after a fleet-wide outage over the slot: boots uniform within %s, one catch-up run each after a fresh jitter\n", m.BootSpread)
	fmt.Fprintf(w, "  window [0, %s) after the first boot (boot spread + jitter + one run); runs started +%s .. +%s\n",
		r.CatchUpTo, r.CatchUpFirst.Round(time.Second), r.CatchUpLast.Round(time.Second))
	fmt.Fprintf(w, "  per second over %d s: mean %.1f/s  peak %d/s at +%ds  p99 %d/s  peak/mean %.2f; peak / steady mean %.2f\n",
		cu.Bins, cu.Mean, cu.Peak, cu.PeakAt, cu.P99, cu.Ratio(), float64(cu.Peak)/st.Mean)
	fmt.Fprintf(w, "  requests per minute after the first boot (ramp %s, plateau, ramp down):\n   ", m.BootSpread)
	for i := 0; i*60 < len(r.CatchUp); i++ {
		sum := 0
		for _, v := range r.CatchUp[i*60 : min(len(r.CatchUp), (i+1)*60)] {
			sum += v
		}
		fmt.Fprintf(w, " %dm:%d", i, sum)
	}
	fmt.Fprintln(w)
	if len(sizes) > 0 {
		fmt.Fprintf(w, "\njitter sizing, %d refs per host: smallest jitter whose per-second peak <= R, the registry's capacity in requests/s (whole minutes from 1m, within 2%%; searched up to one period)\n", m.Refs)
		fmt.Fprintf(w, "  %-7s %-5s %-10s | default (rate %d/s): %-11s %-6s %-5s %-9s | what-if rate = 0: %-11s %-6s | rate = 0, per_registry = 1: %-11s %s\n",
			"hosts", "R", "floor", p.Refresh.Rate, "jitter", "k", "peak", "peak/mean", "jitter", "k", "jitter", "k")
		for _, row := range sizes {
			s := row[0]
			fmt.Fprintf(w, "  %-7d %-5d %-10s | %20s %-11s %-6s %-5d %-9.2f | %17s %-11s %-6s | %28s %-11s %s\n", s.Hosts, s.Capacity, s.Floor.Round(time.Second),
				"", jitterCell(s), factorCell(s), s.Stats.Peak, s.Stats.Ratio(), "", jitterCell(row[1]), factorCell(row[1]), "", jitterCell(row[2]), factorCell(row[2]))
		}
		fmt.Fprintln(w, "  floor = hosts x refs / R (an even spread); k = jitter / floor, so jitter >= k x hosts x refs / R")
	}
}

// runLine describes one host's run on the wire.
func runLine(r *Result) string {
	pace := "unpaced"
	if r.Pacing.Interval > 0 {
		pace = fmt.Sprintf("one slot every %s", r.Pacing.Interval)
	}
	return fmt.Sprintf("%d in flight, %s: %s long, up to %d requests in one second from one host", r.Pacing.Inflight, pace, r.Run, r.HostPeak)
}

func jitterCell(s Sizing) string {
	if s.Over {
		return "> " + s.Jitter.String()
	}
	return s.Jitter.String()
}

func factorCell(s Sizing) string {
	switch {
	case s.Over:
		return "-"
	case s.Jitter == time.Minute && s.Floor < time.Minute:
		return "(min)" // the smallest jitter tried already meets the rate
	}
	return fmt.Sprintf("%.2f", s.Factor())
}

func floats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmt.Sprintf("%.2f", f)
	}
	return strings.Join(s, " ")
}
