// Package prunespec is the prune job's light half: its descriptor (name,
// schedule, events, gauges), which the daemon and its adapters read
// without linking the job (which links containers/storage).
package prunespec

import (
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Descriptor is the prune job: it removes images and layers within the
// policy's limits.
var Descriptor = jobspec.Descriptor{
	Name:          report.JobPrune,
	Schedule:      func(s policy.Schedule) policy.CronSpec { return s.Prune },
	Mutating:      func(p *policy.Policy) bool { return p.Prune.Enabled },
	UserNamespace: func(_ *policy.Policy, dryRun bool) bool { return !dryRun },
	Events: []report.EventKind{
		jobspec.ImageRemoved,
		{Kind: report.EventLayerRemoved, MessageID: "ba63348b29c04226ac3e13b747de605a", Title: "layer removed"},
		{Kind: report.EventQuotaExceeded, MessageID: "624ae96b18e848bd9efc75caeccc105b", Title: "storage quota exceeded"},
	},
	Gauges:        gauges,
	MeasuresStore: true,
	FreesBytes:    true,
}

// gauges are the prune job's figures.
var gauges = []jobspec.Gauge{
	{Name: "stowage_prune_usage_bytes",
		Help:    "Store usage on disk (allocated bytes of writable layers, image data and containers) after the last prune run.",
		Figures: []jobspec.Figure{{Key: "usage_bytes"}}},
	{Name: "stowage_prune_limit_bytes",
		Help:    "Effective limit of the last prune run: the policy quota or the disk quota's soft limit, whichever is lower; 0 = none.",
		Figures: []jobspec.Figure{{Key: "limit_bytes"}}},
	{Name: "stowage_prune_need_bytes",
		Help:    "Bytes the last prune run had to free to get below its low watermark or above min_free; 0 = no pressure.",
		Figures: []jobspec.Figure{{Key: "pressure_need_bytes"}}},
	{Name: "stowage_prune_freed_bytes",
		Help:    "Bytes the last prune run freed.",
		Figures: []jobspec.Figure{{Key: "freed_bytes"}}},
	{Name: "stowage_prune_shortfall_bytes",
		Help:    "Bytes the last prune run needed to free but could not (everything left is in use, kept or too young); 0 = none.",
		Figures: []jobspec.Figure{{Key: "shortfall_bytes"}}},
	{Name: "stowage_prune_removed_images",
		Help:    "Images the last prune run removed.",
		Figures: []jobspec.Figure{{Key: "removed_images"}}},
	{Name: "stowage_prune_removed_layers",
		Help:    "Orphan layers the last prune run removed.",
		Figures: []jobspec.Figure{{Key: "removed_layers"}}},
	{Name: "stowage_prune_kept_images",
		Help:    "Images the last prune run kept.",
		Figures: []jobspec.Figure{{Key: "kept_images"}}},
	{Name: "stowage_prune_refused",
		Help:    "1 when the last prune run removed nothing because the store's metadata was inconsistent.",
		Figures: []jobspec.Figure{{Key: "refused"}}},
	{Name: "stowage_prune_quota_used_bytes",
		Help:    "The user's disk quota usage on the graphroot filesystem at the last prune run (present when a quota applies).",
		Figures: []jobspec.Figure{{Key: "quota_used_bytes"}}},
	{Name: "stowage_prune_quota_soft_limit_bytes",
		Help:    "The disk quota's soft limit (0 = none), present when a quota applies.",
		Figures: []jobspec.Figure{{Key: "quota_soft_limit_bytes"}}},
	{Name: "stowage_prune_quota_hard_limit_bytes",
		Help:    "The disk quota's hard limit (0 = none), present when a quota applies.",
		Figures: []jobspec.Figure{{Key: "quota_hard_limit_bytes"}}},
}
