package control

import (
	"net/http"
	"regexp"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stowage/stowage/service/api"
)

// Metrics are the daemon's Prometheus metrics, in a private registry (no
// global state). Job-specific counters from a report's Metrics map become
// gauges named stowage_job_<name>{job="..."} holding the last run's value.
type Metrics struct {
	reg       *prometheus.Registry
	runs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	lastRun   *prometheus.GaugeVec
	lastOK    *prometheus.GaugeVec
	running   *prometheus.GaugeVec
	policyOK  prometheus.Gauge
	reloads   *prometheus.CounterVec
	mu        sync.Mutex
	jobGauges map[string]*prometheus.GaugeVec
}

// NewMetrics registers the daemon's metrics plus the Go and process
// collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stowage_job_runs_total", Help: "Job runs by outcome.",
		}, []string{"job", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "stowage_job_duration_seconds", Help: "Duration of finished job runs.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10),
		}, []string{"job"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stowage_job_last_run_timestamp_seconds", Help: "End of the job's last run.",
		}, []string{"job"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stowage_job_last_success_timestamp_seconds", Help: "End of the job's last successful run.",
		}, []string{"job"}),
		running: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stowage_job_running", Help: "1 while a run of the job is in progress.",
		}, []string{"job"}),
		policyOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stowage_policy_valid", Help: "0 when the last policy (re)load failed and the previous policy is in force.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stowage_policy_reloads_total", Help: "Policy reloads by result.",
		}, []string{"result"}),
		jobGauges: map[string]*prometheus.GaugeVec{},
	}
	m.reg.MustRegister(m.runs, m.duration, m.lastRun, m.lastOK, m.running, m.policyOK, m.reloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.policyOK.Set(1)
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the private registry (for tests and extra collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Started marks a run in progress.
func (m *Metrics) Started(job string) { m.running.WithLabelValues(job).Set(1) }

// Finished records a finished run and its report's metrics.
func (m *Metrics) Finished(r *api.Run) {
	m.running.WithLabelValues(r.Job).Set(0)
	m.runs.WithLabelValues(r.Job, string(r.Outcome)).Inc()
	if d := r.Duration(); d > 0 {
		m.duration.WithLabelValues(r.Job).Observe(d.Seconds())
	}
	if r.DryRun {
		return // a plan is not the state of the store
	}
	m.lastRun.WithLabelValues(r.Job).Set(float64(r.Finished.Unix()))
	if r.Outcome == api.OutcomeSucceeded {
		m.lastOK.WithLabelValues(r.Job).Set(float64(r.Finished.Unix()))
	}
	if r.Common == nil {
		return
	}
	for name, v := range r.Common.Metrics {
		if g := m.jobGauge(name); g != nil {
			g.WithLabelValues(r.Job).Set(v)
		}
	}
}

var invalidMetricChars = regexp.MustCompile(`[^a-zA-Z0-9_]`)

// jobGauge returns (registering on first use) stowage_job_<name>.
func (m *Metrics) jobGauge(name string) *prometheus.GaugeVec {
	name = "stowage_job_" + invalidMetricChars.ReplaceAllString(name, "_")
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.jobGauges[name]; ok {
		return g
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "Job report metric (last run)."}, []string{"job"})
	if err := m.reg.Register(g); err != nil {
		// Collides with a built-in metric name: drop it rather than fail.
		m.jobGauges[name] = nil
		return nil
	}
	m.jobGauges[name] = g
	return g
}

// Reloaded records a policy (re)load.
func (m *Metrics) Reloaded(ok bool) {
	if ok {
		m.policyOK.Set(1)
		m.reloads.WithLabelValues("ok").Inc()
		return
	}
	m.policyOK.Set(0)
	m.reloads.WithLabelValues("error").Inc()
}
