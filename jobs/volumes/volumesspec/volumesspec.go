// Package volumesspec is the volumes job's light half: its descriptor (name,
// schedule, events, gauges), which the daemon and its adapters read
// without linking the job (which links containers/storage).
package volumesspec

import (
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Descriptor is the volumes job: it removes unused Podman volumes through
// podman's API.
var Descriptor = jobspec.Descriptor{
	Name:     report.JobVolumes,
	Schedule: func(s policy.Schedule) policy.CronSpec { return s.Volumes },
	Mutating: func(p *policy.Policy) bool { return p.Volumes.Enabled },
	Events: []report.EventKind{
		{Kind: report.EventVolumeRemoved, MessageID: "235991c80c64439483c5cc23866563a4", Title: "volume removed"},
	},
	Gauges:     gauges,
	FreesBytes: true,
}

// gauges are the volumes job's figures.
var gauges = []jobspec.Gauge{
	{Name: "stowage_volumes_removed",
		Help:    "Volumes the last volumes run removed.",
		Figures: []jobspec.Figure{{Key: "removed"}}},
	{Name: "stowage_volumes_kept",
		Help:    "Unused volumes the last volumes run kept.",
		Figures: []jobspec.Figure{{Key: "kept"}}},
	{Name: "stowage_volumes_freed_bytes",
		Help:    "Bytes the last volumes run freed.",
		Figures: []jobspec.Figure{{Key: "freed_bytes"}}},
}
