// Package jobspec is the job contract's light half: what the daemon, its
// adapters (D-Bus, journal, metrics, notifications) and the command line
// know about each job without linking the job itself (which links
// containers/storage). The registry lists every job once; a job's run side
// (jobs/shared/jobenv.Runner) is registered beside it in cmd/stowage.
package jobspec

import (
	"slices"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Descriptor describes one job.
type Descriptor struct {
	// Name is the job's name: `stowage run NAME`, the report's job field,
	// the D-Bus, journal and metrics job label.
	Name string
	// Schedule selects the job's cron specification ([schedule] NAME).
	Schedule func(policy.Schedule) policy.CronSpec
	// Mutating reports whether a real (not dry) run under p may change
	// storage or volumes; two mutating runs never overlap.
	Mutating func(p *policy.Policy) bool
	// UserNamespace reports whether a rootless run under p must enter the
	// user namespace to open the store (it writes to it, or reads files
	// only the namespace's ids can). Nil: the job opens no store.
	UserNamespace func(p *policy.Policy, dryRun bool) bool
	// Events are the kinds of event the job reports (report.Event), each
	// with its journal MESSAGE_ID and notification title; a kind two jobs
	// report is the same value in both.
	Events []report.EventKind
	// Gauges are the metric families the job exports from its last
	// report's figures.
	Gauges []Gauge
	// MeasuresStore says the report's "usage_bytes" and "limit_bytes"
	// figures are the store's usage and limit (the D-Bus status shows them).
	MeasuresStore bool
	// FreesBytes says the report's "freed_bytes" figure counts bytes given
	// back (stowage_job_freed_bytes_total).
	FreesBytes bool
}

// The jobs.
var (
	// Refresh checks tags against their registries and may pull.
	Refresh = Descriptor{
		Name:     report.JobRefresh,
		Schedule: func(s policy.Schedule) policy.CronSpec { return s.Refresh },
		Mutating: func(p *policy.Policy) bool { return p.Refresh.MayPull() },
		// Notify mode only reads the store; pull mode writes layers.
		UserNamespace: func(p *policy.Policy, dryRun bool) bool { return !dryRun && p.Refresh.MayPull() },
		Events:        []report.EventKind{driftDetected, imagePulled, newerVersion},
		Gauges:        refreshGauges,
	}
	// Verify re-verifies signatures and, optionally, layer integrity.
	Verify = Descriptor{
		Name:     report.JobVerify,
		Schedule: func(s policy.Schedule) policy.CronSpec { return s.Verify },
		Mutating: verifyMutating,
		// Reading subuid-owned layer files (integrity) needs the
		// namespace just as deleting does.
		UserNamespace: func(p *policy.Policy, dryRun bool) bool {
			return p.Verify.Integrity || !dryRun && verifyMutating(p)
		},
		Events: []report.EventKind{signatureRejected, signatureRecovered, imageUntagged, imageRemoved, layerCorrupted},
		Gauges: verifyGauges,
	}
	// Prune removes images and layers within the policy's limits.
	Prune = Descriptor{
		Name:          report.JobPrune,
		Schedule:      func(s policy.Schedule) policy.CronSpec { return s.Prune },
		Mutating:      func(p *policy.Policy) bool { return p.Prune.Enabled },
		UserNamespace: func(_ *policy.Policy, dryRun bool) bool { return !dryRun },
		Events:        []report.EventKind{imageRemoved, layerRemoved, quotaExceeded},
		Gauges:        pruneGauges,
		MeasuresStore: true,
		FreesBytes:    true,
	}
	// Volumes removes unused Podman volumes through podman's API.
	Volumes = Descriptor{
		Name:       report.JobVolumes,
		Schedule:   func(s policy.Schedule) policy.CronSpec { return s.Volumes },
		Mutating:   func(p *policy.Policy) bool { return p.Volumes.Enabled },
		Events:     []report.EventKind{volumeRemoved},
		Gauges:     volumesGauges,
		FreesBytes: true,
	}
)

// The kinds of event the jobs report.
var (
	driftDetected      = report.EventKind{Kind: report.EventDriftDetected, MessageID: "cd725c7e20074dc196d54004842844e7", Title: "newer image available"}
	signatureRejected  = report.EventKind{Kind: report.EventSignatureRejected, MessageID: "c260b8f8392c43e6b9dc4507da0d6b4a", Title: "signature rejected"}
	signatureRecovered = report.EventKind{Kind: report.EventSignatureRecovered, MessageID: "10e7153b5d0e4ae397dce9b7af608abc", Title: "signature valid again"}
	imageRemoved       = report.EventKind{Kind: report.EventImageRemoved, MessageID: "b1a4361849344034acb8603b43a4d909", Title: "image removed"}
	imageUntagged      = report.EventKind{Kind: report.EventImageUntagged, MessageID: "92051d9bc03a4ea787d0d1ec7e5bd36a", Title: "image untagged"}
	imagePulled        = report.EventKind{Kind: report.EventImagePulled, MessageID: "137dbb1397cd45b28af57018733eaacd", Title: "image pulled"}
	layerRemoved       = report.EventKind{Kind: report.EventLayerRemoved, MessageID: "ba63348b29c04226ac3e13b747de605a", Title: "layer removed"}
	layerCorrupted     = report.EventKind{Kind: report.EventLayerCorrupted, MessageID: "63b0d8a824164a06a8f57b39911f9881", Title: "corrupted layer"}
	volumeRemoved      = report.EventKind{Kind: report.EventVolumeRemoved, MessageID: "235991c80c64439483c5cc23866563a4", Title: "volume removed"}
	quotaExceeded      = report.EventKind{Kind: report.EventQuotaExceeded, MessageID: "624ae96b18e848bd9efc75caeccc105b", Title: "storage quota exceeded"}
	newerVersion       = report.EventKind{Kind: report.EventNewerVersion, MessageID: "cc82b40e678845c89fd44858e8b79ea0", Title: "newer version available"}
)

func verifyMutating(p *policy.Policy) bool {
	return p.Verify.Mode == policy.VerifyUntag || p.Verify.Mode == policy.VerifyRemove
}

// registry is every job, in a stable order (status, metrics, docs).
var registry = []Descriptor{Refresh, Verify, Prune, Volumes}

// All returns every job's descriptor, in the registry's order.
func All() []Descriptor { return slices.Clone(registry) }

// Names returns every job's name, in the registry's order.
func Names() []string { return NamesOf(registry) }

// NamesOf returns the names of jobs, in their order.
func NamesOf(jobs []Descriptor) []string {
	out := make([]string, len(jobs))
	for i, d := range jobs {
		out[i] = d.Name
	}
	return out
}

// Lookup returns the job named name.
func Lookup(name string) (Descriptor, bool) {
	i := slices.IndexFunc(registry, func(d Descriptor) bool { return d.Name == name })
	if i < 0 {
		return Descriptor{}, false
	}
	return registry[i], true
}

// EventKinds returns every kind of event the jobs report, each once, in
// the registry's order.
func EventKinds() []report.EventKind {
	var out []report.EventKind
	for _, d := range registry {
		for _, k := range d.Events {
			if !slices.ContainsFunc(out, func(o report.EventKind) bool { return o.Kind == k.Kind }) {
				out = append(out, k)
			}
		}
	}
	return out
}

// LookupEvent returns the kind of event named kind.
func LookupEvent(kind string) (report.EventKind, bool) {
	for _, d := range registry {
		for _, k := range d.Events {
			if k.Kind == kind {
				return k, true
			}
		}
	}
	return report.EventKind{}, false
}
