// Package deferral decides which part of a job run waits for a cheaper
// moment: the [schedule] defer_on_metered and defer_on_battery policy
// applied to the host's conditions (a metered connection, battery power).
// It is pure: the conditions are read elsewhere (service/hoststate) and the
// decision is handed to the worker as flags, never by editing the policy.
package deferral

import (
	"slices"
	"strings"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Conditions are the host conditions that make work costly.
type Conditions struct {
	// Metered: NetworkManager reports a metered connection.
	Metered bool
	// OnBattery: UPower reports the machine runs on battery.
	OnBattery bool
}

// Reasons for deferring, as reports and logs show them.
const (
	ReasonMetered = "metered connection"
	ReasonBattery = "on battery"
)

// Worker flags that carry a decision to `stowage run JOB`; each takes the
// reason as its value.
const (
	FlagDeferPulls     = "defer-pulls"
	FlagDeferIntegrity = "defer-integrity"
)

// Decision is what one run leaves out, with the reason ("" = nothing).
type Decision struct {
	// Pulls: a refresh run checks and reports drift but pulls nothing.
	Pulls string
	// Integrity: a verify run does not re-hash layers.
	Integrity string
}

// Zero reports whether nothing is deferred.
func (d Decision) Zero() bool { return d == Decision{} }

// reason says why w is deferred under c, "" when it is not.
func reason(s policy.Schedule, c Conditions, w policy.DeferWork) string {
	var why []string
	if c.Metered && slices.Contains(s.DeferOnMetered, w) {
		why = append(why, ReasonMetered)
	}
	if c.OnBattery && slices.Contains(s.DeferOnBattery, w) {
		why = append(why, ReasonBattery)
	}
	return strings.Join(why, ", ")
}

// Decide returns what a run of job under p leaves out under c. Only work
// the run would do is deferred: pulls when a refresh may pull (pull mode or
// a pull rule), integrity when verify re-hashes (verify.integrity). A dry
// run changes nothing and pulls nothing, so it defers nothing either.
func Decide(p *policy.Policy, job string, dryRun bool, c Conditions) Decision {
	if dryRun {
		return Decision{}
	}
	var d Decision
	switch job {
	case report.JobRefresh:
		if p.Refresh.Mode != policy.RefreshOff && p.Refresh.MayPull() {
			d.Pulls = reason(p.Schedule, c, policy.DeferPulls)
		}
	case report.JobVerify:
		if p.Verify.Mode != policy.VerifyOff && p.Verify.Integrity {
			d.Integrity = reason(p.Schedule, c, policy.DeferIntegrity)
		}
	}
	return d
}

// Args are the worker flags that carry d (none when nothing is deferred).
func (d Decision) Args() []string {
	var a []string
	if d.Pulls != "" {
		a = append(a, "--"+FlagDeferPulls, d.Pulls)
	}
	if d.Integrity != "" {
		a = append(a, "--"+FlagDeferIntegrity, d.Integrity)
	}
	return a
}

// Owed is the work runs left out, by job, not yet done by a later run.
type Owed map[string]Decision

// Record updates o with a finished run of job: what it left out (left,
// from its report: a deferral that had nothing to skip owes nothing) is
// owed; a run that deferred nothing has done what earlier runs owed.
func (o Owed) Record(job string, left Decision) {
	if left.Zero() {
		delete(o, job)
		return
	}
	o[job] = left
}

// Due returns, sorted, the jobs whose owed work would no longer be left
// out now (decide tells what a run of a job would defer now): their
// catch-up run can go.
func (o Owed) Due(decide func(job string) Decision) []string {
	var due []string
	for job, owed := range o {
		now := decide(job)
		if owed.Pulls != "" && now.Pulls == "" || owed.Integrity != "" && now.Integrity == "" {
			due = append(due, job)
		}
	}
	slices.Sort(due)
	return due
}

// Left is what a finished run with decision d actually left out, read from
// its report's figures: a deferral with nothing to skip (no drift to pull)
// leaves nothing owed.
func Left(d Decision, metrics map[string]float64) Decision {
	var l Decision
	if d.Pulls != "" && metrics[report.MetricPullsDeferred] > 0 {
		l.Pulls = d.Pulls
	}
	if d.Integrity != "" && metrics[report.MetricIntegrityDeferred] > 0 {
		l.Integrity = d.Integrity
	}
	return l
}
