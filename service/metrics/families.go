// Package metrics builds the daemon's Prometheus metrics from what the state
// database keeps (each job's last run, its accumulated counters, the last
// report figures) and the policy in force, serves them, and writes them to a
// node_exporter textfile collector file. The daemon exits when idle, so
// nothing here counts in process memory: every figure survives a restart.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage/stowage/jobs/report"
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

// Families is every metric family stowage exports (besides the Go and
// process collectors on the live endpoints), in exposition order. The
// README's metrics section, the alerting rules and the dashboard may only use
// these (a test checks).
var Families = []Family{
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

	{Name: "stowage_refresh_references", Type: prometheus.GaugeValue, Labels: []string{"status"},
		Help: "References the last refresh run checked, by status: current, drifted, missing, blocked, error."},
	{Name: "stowage_refresh_drift_pending_references", Type: prometheus.GaugeValue,
		Help: "References whose registry digest differs from the local image after the last refresh run (drifted and not pulled)."},
	{Name: "stowage_refresh_drift_oldest_first_seen_timestamp_seconds", Type: prometheus.GaugeValue,
		Help: "When the oldest pending drift's remote digest was first seen, in seconds since the epoch (absent when no drift is pending)."},
	{Name: "stowage_refresh_newer_pending_references", Type: prometheus.GaugeValue,
		Help: "Version-like tags for which the last refresh run found a newer version in the same track (not pulled)."},
	{Name: "stowage_refresh_newer_oldest_first_seen_timestamp_seconds", Type: prometheus.GaugeValue,
		Help: "When the oldest pending newer version was first reported, in seconds since the epoch (absent when none is pending)."},
	{Name: "stowage_refresh_pulled_images", Type: prometheus.GaugeValue,
		Help: "Drifted references the last refresh run pulled."},
	{Name: "stowage_refresh_requests", Type: prometheus.GaugeValue, Labels: []string{"method"},
		Help: "Registry requests the last refresh run sent, by kind: HEAD (manifests), GET (manifests), tags_list (tag listing pages)."},

	{Name: "stowage_verify_names", Type: prometheus.GaugeValue, Labels: []string{"status"},
		Help: "Image names the last verify run judged, by status: accepted, rejected, unsigned, error."},
	{Name: "stowage_verify_insecure_names", Type: prometheus.GaugeValue,
		Help: "Accepted names whose policy rule is insecureAcceptAnything, at the last verify run."},
	{Name: "stowage_verify_untagged_names", Type: prometheus.GaugeValue,
		Help: "Names the last verify run removed (verify mode untag or remove)."},
	{Name: "stowage_verify_removed_images", Type: prometheus.GaugeValue,
		Help: "Images the last verify run removed (verify mode remove)."},
	{Name: "stowage_verify_layers_checked", Type: prometheus.GaugeValue,
		Help: "Layers the last verify run re-hashed (present when integrity is on)."},
	{Name: "stowage_verify_corrupted_layers", Type: prometheus.GaugeValue,
		Help: "Layers whose content no longer matches their digest, at the last verify run (present when integrity is on)."},

	{Name: "stowage_prune_usage_bytes", Type: prometheus.GaugeValue,
		Help: "Store usage on disk (allocated bytes of writable layers, image data and containers) after the last prune run."},
	{Name: "stowage_prune_limit_bytes", Type: prometheus.GaugeValue,
		Help: "Effective limit of the last prune run: the policy quota or the disk quota's soft limit, whichever is lower; 0 = none."},
	{Name: "stowage_prune_need_bytes", Type: prometheus.GaugeValue,
		Help: "Bytes the last prune run had to free to get below its low watermark or above min_free; 0 = no pressure."},
	{Name: "stowage_prune_freed_bytes", Type: prometheus.GaugeValue,
		Help: "Bytes the last prune run freed."},
	{Name: "stowage_prune_shortfall_bytes", Type: prometheus.GaugeValue,
		Help: "Bytes the last prune run needed to free but could not (everything left is in use, kept or too young); 0 = none."},
	{Name: "stowage_prune_removed_images", Type: prometheus.GaugeValue,
		Help: "Images the last prune run removed."},
	{Name: "stowage_prune_removed_layers", Type: prometheus.GaugeValue,
		Help: "Orphan layers the last prune run removed."},
	{Name: "stowage_prune_kept_images", Type: prometheus.GaugeValue,
		Help: "Images the last prune run kept."},
	{Name: "stowage_prune_refused", Type: prometheus.GaugeValue,
		Help: "1 when the last prune run removed nothing because the store's metadata was inconsistent."},
	{Name: "stowage_prune_quota_used_bytes", Type: prometheus.GaugeValue,
		Help: "The user's disk quota usage on the graphroot filesystem at the last prune run (present when a quota applies)."},
	{Name: "stowage_prune_quota_soft_limit_bytes", Type: prometheus.GaugeValue,
		Help: "The disk quota's soft limit (0 = none), present when a quota applies."},
	{Name: "stowage_prune_quota_hard_limit_bytes", Type: prometheus.GaugeValue,
		Help: "The disk quota's hard limit (0 = none), present when a quota applies."},

	{Name: "stowage_volumes_removed", Type: prometheus.GaugeValue,
		Help: "Volumes the last volumes run removed."},
	{Name: "stowage_volumes_kept", Type: prometheus.GaugeValue,
		Help: "Unused volumes the last volumes run kept."},
	{Name: "stowage_volumes_freed_bytes", Type: prometheus.GaugeValue,
		Help: "Bytes the last volumes run freed."},
}

// fromReport maps one figure of a job report's Metrics onto a family.
type fromReport struct {
	job, key, family string
	label            string // the value of the family's only label, if it has one
	// omitZero drops the series when the figure is 0 (a timestamp that
	// means "none").
	omitZero bool
}

// reportFigures are the report figures exported, per job. Figures a report
// lacks are not exported (e.g. the quota ones without a quota).
var reportFigures = []fromReport{
	{job: report.JobRefresh, key: "current", family: "stowage_refresh_references", label: "current"},
	{job: report.JobRefresh, key: "drifted", family: "stowage_refresh_references", label: "drifted"},
	{job: report.JobRefresh, key: "missing", family: "stowage_refresh_references", label: "missing"},
	{job: report.JobRefresh, key: "blocked", family: "stowage_refresh_references", label: "blocked"},
	{job: report.JobRefresh, key: "errors", family: "stowage_refresh_references", label: "error"},
	{job: report.JobRefresh, key: "drift_pending", family: "stowage_refresh_drift_pending_references"},
	{job: report.JobRefresh, key: "drift_oldest_first_seen", family: "stowage_refresh_drift_oldest_first_seen_timestamp_seconds", omitZero: true},
	{job: report.JobRefresh, key: "pulled", family: "stowage_refresh_pulled_images"},
	{job: report.JobRefresh, key: "head_requests", family: "stowage_refresh_requests", label: "HEAD"},
	{job: report.JobRefresh, key: "get_requests", family: "stowage_refresh_requests", label: "GET"},
	{job: report.JobRefresh, key: "tags_requests", family: "stowage_refresh_requests", label: "tags_list"},
	{job: report.JobRefresh, key: "newer_pending", family: "stowage_refresh_newer_pending_references"},
	{job: report.JobRefresh, key: "newer_oldest_first_seen", family: "stowage_refresh_newer_oldest_first_seen_timestamp_seconds", omitZero: true},

	{job: report.JobVerify, key: "accepted", family: "stowage_verify_names", label: "accepted"},
	{job: report.JobVerify, key: "rejected", family: "stowage_verify_names", label: "rejected"},
	{job: report.JobVerify, key: "unsigned", family: "stowage_verify_names", label: "unsigned"},
	{job: report.JobVerify, key: "errors", family: "stowage_verify_names", label: "error"},
	{job: report.JobVerify, key: "insecure", family: "stowage_verify_insecure_names"},
	{job: report.JobVerify, key: "untagged", family: "stowage_verify_untagged_names"},
	{job: report.JobVerify, key: "removed", family: "stowage_verify_removed_images"},
	{job: report.JobVerify, key: "layers_checked", family: "stowage_verify_layers_checked"},
	{job: report.JobVerify, key: "corrupted_layers", family: "stowage_verify_corrupted_layers"},

	{job: report.JobPrune, key: "usage_bytes", family: "stowage_prune_usage_bytes"},
	{job: report.JobPrune, key: "limit_bytes", family: "stowage_prune_limit_bytes"},
	{job: report.JobPrune, key: "pressure_need_bytes", family: "stowage_prune_need_bytes"},
	{job: report.JobPrune, key: "freed_bytes", family: "stowage_prune_freed_bytes"},
	{job: report.JobPrune, key: "shortfall_bytes", family: "stowage_prune_shortfall_bytes"},
	{job: report.JobPrune, key: "removed_images", family: "stowage_prune_removed_images"},
	{job: report.JobPrune, key: "removed_layers", family: "stowage_prune_removed_layers"},
	{job: report.JobPrune, key: "kept_images", family: "stowage_prune_kept_images"},
	{job: report.JobPrune, key: "refused", family: "stowage_prune_refused"},
	{job: report.JobPrune, key: "quota_used_bytes", family: "stowage_prune_quota_used_bytes"},
	{job: report.JobPrune, key: "quota_soft_limit_bytes", family: "stowage_prune_quota_soft_limit_bytes"},
	{job: report.JobPrune, key: "quota_hard_limit_bytes", family: "stowage_prune_quota_hard_limit_bytes"},

	{job: report.JobVolumes, key: "removed", family: "stowage_volumes_removed"},
	{job: report.JobVolumes, key: "kept", family: "stowage_volumes_kept"},
	{job: report.JobVolumes, key: "freed_bytes", family: "stowage_volumes_freed_bytes"},
}
