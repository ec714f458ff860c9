// Package refreshspec is the refresh job's light half: its descriptor (name,
// schedule, events, gauges), which the daemon and its adapters read
// without linking the job (which links containers/storage).
package refreshspec

import (
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Descriptor is the refresh job: it checks tags against their registries
// and may pull.
var Descriptor = jobspec.Descriptor{
	Name:     report.JobRefresh,
	Schedule: func(s policy.Schedule) policy.CronSpec { return s.Refresh },
	Mutating: func(p *policy.Policy) bool { return p.Refresh.MayPull() },
	// Notify mode only reads the store; pull mode writes layers.
	UserNamespace: func(p *policy.Policy, dryRun bool) bool { return !dryRun && p.Refresh.MayPull() },
	Events: []report.EventKind{
		{Kind: report.EventDriftDetected, MessageID: "cd725c7e20074dc196d54004842844e7", Title: "newer image available"},
		{Kind: report.EventImagePulled, MessageID: "137dbb1397cd45b28af57018733eaacd", Title: "image pulled"},
		{Kind: report.EventNewerVersion, MessageID: "cc82b40e678845c89fd44858e8b79ea0", Title: "newer version available"},
	},
	Gauges: gauges,
}

// gauges are the refresh job's figures.
var gauges = []jobspec.Gauge{
	{Name: "stowage_refresh_references", Label: "status",
		Help:    "References the last refresh run checked, by status: current, drifted, missing, blocked, error.",
		Figures: []jobspec.Figure{{Key: "current", Label: "current"}, {Key: "drifted", Label: "drifted"}, {Key: "missing", Label: "missing"}, {Key: "blocked", Label: "blocked"}, {Key: "errors", Label: "error"}}},
	{Name: "stowage_refresh_drift_pending_references",
		Help:    "References whose registry digest differs from the local image after the last refresh run (drifted and not pulled).",
		Figures: []jobspec.Figure{{Key: "drift_pending"}}},
	{Name: "stowage_refresh_drift_oldest_first_seen_timestamp_seconds",
		Help:    "When the oldest pending drift's remote digest was first seen, in seconds since the epoch (absent when no drift is pending).",
		Figures: []jobspec.Figure{{Key: "drift_oldest_first_seen", OmitZero: true}}},
	{Name: "stowage_refresh_newer_pending_references",
		Help:    "Version-like tags for which the last refresh run found a newer version in the same track (not pulled).",
		Figures: []jobspec.Figure{{Key: "newer_pending"}}},
	{Name: "stowage_refresh_newer_oldest_first_seen_timestamp_seconds",
		Help:    "When the oldest pending newer version was first reported, in seconds since the epoch (absent when none is pending).",
		Figures: []jobspec.Figure{{Key: "newer_oldest_first_seen", OmitZero: true}}},
	{Name: "stowage_refresh_pulled_images",
		Help:    "Drifted references the last refresh run pulled.",
		Figures: []jobspec.Figure{{Key: "pulled"}}},
	{Name: "stowage_refresh_requests", Label: "method",
		Help:    "Registry requests the last refresh run sent, by kind: HEAD (manifests), GET (manifests), tags_list (tag listing pages).",
		Figures: []jobspec.Figure{{Key: "head_requests", Label: "HEAD"}, {Key: "get_requests", Label: "GET"}, {Key: "tags_requests", Label: "tags_list"}}},
}
