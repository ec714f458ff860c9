// Package jobspec is the job contract's light half: what the daemon, its
// adapters (D-Bus, journal, metrics, notifications) and the command line
// know about each job without linking the job itself (which links
// containers/storage). The registry lists every job once; a job's run side
// (jobs/jobenv.Runner) is registered beside it in cmd/stowage.
package jobspec

import (
	"slices"

	"github.com/stowage/stowage/jobs/report"
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
	}
	// Prune removes images and layers within the policy's limits.
	Prune = Descriptor{
		Name:          report.JobPrune,
		Schedule:      func(s policy.Schedule) policy.CronSpec { return s.Prune },
		Mutating:      func(p *policy.Policy) bool { return p.Prune.Enabled },
		UserNamespace: func(_ *policy.Policy, dryRun bool) bool { return !dryRun },
		FreesBytes:    true,
	}
	// Volumes removes unused Podman volumes through podman's API.
	Volumes = Descriptor{
		Name:       report.JobVolumes,
		Schedule:   func(s policy.Schedule) policy.CronSpec { return s.Volumes },
		Mutating:   func(p *policy.Policy) bool { return p.Volumes.Enabled },
		FreesBytes: true,
	}
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
