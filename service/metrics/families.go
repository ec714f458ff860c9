// Package metrics builds the daemon's Prometheus metrics from what the state
// database keeps (each job's last run, its accumulated counters, the last
// report figures) and the policy in force, serves them, and writes them to a
// node_exporter textfile collector file. The daemon exits when idle, so
// nothing here counts in process memory: every figure survives a restart.
package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage/stowage/jobs/shared/jobspec"
)

// JobLabel names the job a series belongs to. Not "job": Prometheus sets
// its own job label on every scrape and would rename ours to exported_job.
const JobLabel = "stowage_job"

// Family is one documented metric family.
type Family struct {
	Name   string
	Type   prometheus.ValueType // GaugeValue, CounterValue; UntypedValue marks a histogram
	Help   string
	Labels []string
	// Live families are served on the daemon's own endpoints only, never
	// written to the textfile (they describe the running process).
	Live bool
}

// histogram marks a histogram family in Family.Type.
const histogram = prometheus.UntypedValue

// TypeName is the family's Prometheus type.
func (f Family) TypeName() string {
	switch f.Type {
	case prometheus.CounterValue:
		return "counter"
	case histogram:
		return "histogram"
	}
	return "gauge"
}

// Families is every metric family stowage exports for jobs (besides the Go
// and process collectors on the live endpoints), in exposition order: the
// families every job has, then each job's gauges. The README's metrics
// section, the alerting rules and the dashboard may only use these (a test
// checks).
func Families(jobs jobspec.Registry) []Family {
	return append(slices.Clone(jobFamilies), gaugeFamilies(jobs)...)
}

// jobFamilies are the families of every job and the daemon's own.
var jobFamilies = []Family{
	{Name: "stowage_job_last_run_timestamp_seconds", Type: prometheus.GaugeValue, Labels: []string{JobLabel},
		Help: "When the job's last run (any outcome; dry runs do not count) finished, in seconds since the epoch."},
	{Name: "stowage_job_last_success_timestamp_seconds", Type: prometheus.GaugeValue, Labels: []string{JobLabel},
		Help: "When the job's last successful run finished, in seconds since the epoch."},
	{Name: "stowage_job_last_run_success", Type: prometheus.GaugeValue, Labels: []string{JobLabel},
		Help: "1 if the job's last run succeeded, 0 if it failed, timed out or was canceled."},
	{Name: "stowage_job_last_run_duration_seconds", Type: prometheus.GaugeValue, Labels: []string{JobLabel},
		Help: "How long the job's last run took."},
	{Name: "stowage_job_runs_total", Type: prometheus.CounterValue, Labels: []string{JobLabel, "outcome"},
		Help: "Finished runs of the job (dry runs do not count) by outcome: succeeded, failed, timed_out, canceled."},
	{Name: "stowage_job_duration_seconds", Type: histogram, Labels: []string{JobLabel},
		Help: "Duration of the job's finished runs (dry runs do not count)."},
	{Name: "stowage_job_freed_bytes_total", Type: prometheus.CounterValue, Labels: []string{JobLabel},
		Help: "Bytes the job's runs freed (prune: images and layers; volumes: volume data)."},
	{Name: "stowage_job_schedule_period_seconds", Type: prometheus.GaugeValue, Labels: []string{JobLabel},
		Help: "Longest interval between two consecutive slots of the job's schedule in the policy in force."},
	{Name: "stowage_job_running", Type: prometheus.GaugeValue, Labels: []string{JobLabel}, Live: true,
		Help: "1 while a run of the job is in progress."},
	{Name: "stowage_policy_valid", Type: prometheus.GaugeValue,
		Help: "0 when the last policy (re)load failed and the previous policy is in force, else 1."},
}

// gaugeFamilies are the jobs' gauges (jobspec.Descriptor.Gauges).
func gaugeFamilies(jobs []jobspec.Descriptor) []Family {
	var out []Family
	for _, d := range jobs {
		for _, g := range d.Gauges {
			f := Family{Name: g.Name, Type: prometheus.GaugeValue, Help: g.Help}
			if g.Label != "" {
				f.Labels = []string{g.Label}
			}
			out = append(out, f)
		}
	}
	return out
}

// fromReport maps one figure of a job report's Metrics onto a family.
type fromReport struct {
	job, key, family string
	label            string // the value of the family's only label, if it has one
	// omitZero drops the series when the figure is 0 (a timestamp that
	// means "none").
	omitZero bool
}

// figuresOf lists the report figures exported, per job. Figures a report
// lacks are not exported (e.g. the quota ones without a quota).
func figuresOf(jobs []jobspec.Descriptor) []fromReport {
	var out []fromReport
	for _, d := range jobs {
		for _, g := range d.Gauges {
			for _, f := range g.Figures {
				out = append(out, fromReport{job: d.Name, key: f.Key, family: g.Name, label: f.Label, omitZero: f.OmitZero})
			}
		}
	}
	return out
}
