package metrics

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/runs"
)

// Input is what the metrics are built from.
type Input struct {
	// Last is each job's last finished, non-dry run (reports not needed).
	Last map[string]*api.Run
	// Stats are the accumulated counters from the state database.
	Stats map[string]runs.Stats
	// Periods are the schedule periods of the scheduled jobs (see Period).
	Periods map[string]time.Duration
	// PolicyInvalid is true when the last policy (re)load failed.
	PolicyInvalid bool
}

// Metrics holds the current figures and serves them.
type Metrics struct {
	mu      sync.Mutex
	built   []prometheus.Metric
	running map[string]bool

	cat  *catalog
	live *prometheus.Registry
	file *prometheus.Registry
}

// New returns metrics for jobs with nothing recorded yet; Update fills
// them.
func New(jobs jobspec.Registry) *Metrics {
	m := &Metrics{running: map[string]bool{}, cat: newCatalog(jobs), live: prometheus.NewRegistry(), file: prometheus.NewRegistry()}
	m.live.MustRegister(collector{m: m, live: true},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.file.MustRegister(collector{m: m})
	return m
}

// Live is the registry of the daemon's /metrics endpoints: the figures plus
// the running gauges and the Go and process collectors.
func (m *Metrics) Live() prometheus.Gatherer { return m.live }

// File is the registry written to the textfile: the figures alone.
// node_exporter has its own process metrics, and Go/process series of two
// files would collide.
func (m *Metrics) File() prometheus.Gatherer { return m.file }

// Handler serves Live in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.live, promhttp.HandlerOpts{})
}

// SetRunning marks a run of job in progress or not.
func (m *Metrics) SetRunning(job string, on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.running[job] = on
}

// Update replaces the figures with those built from in.
func (m *Metrics) Update(in Input) {
	built := m.cat.build(in)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.built = built
}

// catalog is every family of the jobs' metrics, described once.
type catalog struct {
	jobs    jobspec.Registry
	descs   map[string]*prometheus.Desc
	types   map[string]prometheus.ValueType
	figures []fromReport
}

func newCatalog(jobs jobspec.Registry) *catalog {
	c := &catalog{jobs: jobs, descs: map[string]*prometheus.Desc{}, types: map[string]prometheus.ValueType{}, figures: figuresOf(jobs)}
	for _, f := range Families(jobs) {
		c.descs[f.Name] = prometheus.NewDesc(f.Name, f.Help, f.Labels, nil)
		c.types[f.Name] = f.Type
	}
	return c
}

// collector emits the built figures (and, live, the running gauges). It
// describes nothing up front (an unchecked collector): its series depend on
// which jobs ran.
type collector struct {
	m    *Metrics
	live bool
}

func (c collector) Describe(chan<- *prometheus.Desc) {}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	built := c.m.built
	var running map[string]bool
	if c.live {
		running = maps.Clone(c.m.running)
	}
	c.m.mu.Unlock()
	for _, mt := range built {
		ch <- mt
	}
	if !c.live {
		return
	}
	for _, job := range c.m.cat.jobsOf(slices.Collect(maps.Keys(running))) {
		ch <- c.m.cat.gauge("stowage_job_running", b2f(running[job]), job)
	}
}

// build turns in into const metrics. Pure.
func (c *catalog) build(in Input) []prometheus.Metric {
	var out []prometheus.Metric
	jobs := c.jobsOf(slices.Collect(maps.Keys(in.Last)), slices.Collect(maps.Keys(in.Stats)), slices.Collect(maps.Keys(in.Periods)))
	for _, job := range jobs {
		if r := in.Last[job]; r != nil && !r.Finished.IsZero() {
			out = append(out,
				c.gauge("stowage_job_last_run_timestamp_seconds", unixSeconds(r.Finished), job),
				c.gauge("stowage_job_last_run_success", b2f(r.Outcome == api.OutcomeSucceeded), job),
				c.gauge("stowage_job_last_run_duration_seconds", r.Duration().Seconds(), job))
		}
		st := in.Stats[job]
		if !st.LastSuccess.IsZero() {
			out = append(out, c.gauge("stowage_job_last_success_timestamp_seconds", unixSeconds(st.LastSuccess), job))
		}
		// Every outcome from 0, so increase() sees the first failure.
		for _, o := range []api.Outcome{api.OutcomeSucceeded, api.OutcomeFailed, api.OutcomeTimedOut, api.OutcomeCanceled} {
			out = append(out, prometheus.MustNewConstMetric(c.descs["stowage_job_runs_total"], prometheus.CounterValue,
				float64(st.Runs[o]), job, string(o)))
		}
		buckets := make(map[float64]uint64, len(runs.DurationBuckets))
		for i, ub := range runs.DurationBuckets {
			if i < len(st.DurationBuckets) {
				buckets[ub] = st.DurationBuckets[i]
			} else {
				buckets[ub] = 0
			}
		}
		out = append(out, prometheus.MustNewConstHistogram(c.descs["stowage_job_duration_seconds"],
			st.DurationCount, st.DurationSum, buckets, job))
		if d, ok := c.jobs.Lookup(job); ok && d.FreesBytes {
			out = append(out, prometheus.MustNewConstMetric(c.descs["stowage_job_freed_bytes_total"], prometheus.CounterValue,
				st.FreedBytes, job))
		}
		if p := in.Periods[job]; p > 0 {
			out = append(out, c.gauge("stowage_job_schedule_period_seconds", p.Seconds(), job))
		}
	}
	out = append(out, c.gauge("stowage_policy_valid", b2f(!in.PolicyInvalid)))
	for _, f := range c.figures {
		v, ok := in.Stats[f.job].Metrics[f.key]
		if !ok || f.omitZero && v == 0 {
			continue
		}
		var labels []string
		if f.label != "" {
			labels = []string{f.label}
		}
		out = append(out, prometheus.MustNewConstMetric(c.descs[f.family], c.types[f.family], v, labels...))
	}
	return out
}

// jobsOf lists every registered job, then any other name given, sorted.
func (c *catalog) jobsOf(names ...[]string) []string {
	seen := map[string]bool{}
	out := c.jobs.Names()
	for _, j := range out {
		seen[j] = true
	}
	var extra []string
	for _, ns := range names {
		for _, k := range ns {
			if !seen[k] {
				seen[k] = true
				extra = append(extra, k)
			}
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

func (c *catalog) gauge(name string, v float64, labels ...string) prometheus.Metric {
	d, ok := c.descs[name]
	if !ok {
		panic(fmt.Sprintf("metrics: undocumented family %s", name)) // a bug, caught by the tests
	}
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
