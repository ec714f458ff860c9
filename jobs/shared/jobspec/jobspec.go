// Package jobspec is the job contract's light half: what the daemon, its
// adapters (D-Bus, journal, metrics, notifications) and the command line
// know about each job without linking the job itself (which links
// containers/storage). Each job's descriptor lives in its own light
// package (jobs/JOB/JOBspec); the command line lists every job once
// (jobenv.Job) and hands the Registry to the daemon and its adapters.
package jobspec

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"

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

// ImageRemoved is the event two jobs report (verify in remove mode, prune):
// the same kind, MESSAGE_ID and title in both descriptors.
var ImageRemoved = report.EventKind{Kind: report.EventImageRemoved, MessageID: "b1a4361849344034acb8603b43a4d909", Title: "image removed"}

// Registry is every job's descriptor, in a stable order (status, metrics,
// docs). The command line builds it from its one list of jobs and hands it
// to the daemon and its adapters.
type Registry []Descriptor

// Names returns every job's name, in the registry's order.
func (r Registry) Names() []string {
	out := make([]string, len(r))
	for i, d := range r {
		out[i] = d.Name
	}
	return out
}

// Lookup returns the job named name.
func (r Registry) Lookup(name string) (Descriptor, bool) {
	i := slices.IndexFunc(r, func(d Descriptor) bool { return d.Name == name })
	if i < 0 {
		return Descriptor{}, false
	}
	return r[i], true
}

// EventKinds returns every kind of event the jobs report, each once, in
// the registry's order.
func (r Registry) EventKinds() []report.EventKind {
	var out []report.EventKind
	for _, d := range r {
		for _, k := range d.Events {
			if !slices.ContainsFunc(out, func(o report.EventKind) bool { return o.Kind == k.Kind }) {
				out = append(out, k)
			}
		}
	}
	return out
}

// LookupEvent returns the kind of event named kind.
func (r Registry) LookupEvent(kind string) (report.EventKind, bool) {
	for _, d := range r {
		for _, k := range d.Events {
			if k.Kind == kind {
				return k, true
			}
		}
	}
	return report.EventKind{}, false
}

// Validate checks the registry: names unique and not empty, every
// descriptor complete, each job scheduled by its own [schedule] key (the
// field tagged with its name), gauges named stowage_JOB_… and unique, and
// each event kind declared once (a kind two jobs report is the same value)
// with a distinct 32-hex MESSAGE_ID and a title.
func (r Registry) Validate() error {
	var errs []error
	var tagged policy.Schedule
	sv := reflect.ValueOf(&tagged).Elem()
	for i := range sv.NumField() {
		if c, ok := sv.Field(i).Addr().Interface().(*policy.CronSpec); ok {
			c.Spec = strings.Split(sv.Type().Field(i).Tag.Get("toml"), ",")[0]
		}
	}
	seen := map[string]bool{}
	kinds := map[string]report.EventKind{}
	ids := map[string]string{}
	for _, d := range r {
		if d.Name == "" || seen[d.Name] {
			errs = append(errs, fmt.Errorf("job name %q empty or repeated", d.Name))
		}
		seen[d.Name] = true
		if d.Schedule == nil || d.Mutating == nil {
			errs = append(errs, fmt.Errorf("job %s: no schedule or mutating rule", d.Name))
			continue
		}
		if got := d.Schedule(tagged).Spec; got != d.Name {
			errs = append(errs, fmt.Errorf("job %s: scheduled by [schedule] %q, want its own key", d.Name, got))
		}
		for _, g := range d.Gauges {
			if !strings.HasPrefix(g.Name, "stowage_"+d.Name+"_") || g.Help == "" || len(g.Figures) == 0 || seen[g.Name] {
				errs = append(errs, fmt.Errorf("job %s: gauge %s: want a unique stowage_%s_ name, help and figures", d.Name, g.Name, d.Name))
			}
			seen[g.Name] = true
			for _, f := range g.Figures {
				if f.Key == "" || (f.Label == "") != (g.Label == "") {
					errs = append(errs, fmt.Errorf("job %s: gauge %s figure %+v: key and label value (iff the gauge has a label) required", d.Name, g.Name, f))
				}
			}
		}
		for _, k := range d.Events {
			if prev, ok := kinds[k.Kind]; ok && prev != k {
				errs = append(errs, fmt.Errorf("event kind %s declared differently: %+v and %+v", k.Kind, prev, k))
			}
			kinds[k.Kind] = k
			if !messageID.MatchString(k.MessageID) || k.Title == "" {
				errs = append(errs, fmt.Errorf("event kind %+v: MESSAGE_ID not 32 hex digits, or no title", k))
			}
			if other, ok := ids[k.MessageID]; ok && other != k.Kind {
				errs = append(errs, fmt.Errorf("event kinds %s and %s share MESSAGE_ID %s", k.Kind, other, k.MessageID))
			}
			ids[k.MessageID] = k.Kind
		}
	}
	return errors.Join(errs...)
}

var messageID = regexp.MustCompile(`^[0-9a-f]{32}$`)
