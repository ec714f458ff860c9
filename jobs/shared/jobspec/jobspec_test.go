package jobspec

import (
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// toys is a registry of two made-up jobs scheduled by real [schedule] keys
// (the real jobs are checked where the command line lists them).
func toys() Registry {
	shared := report.EventKind{Kind: "shared_kind", MessageID: "0123456789abcdef0123456789abcdef", Title: "shared"}
	return Registry{
		{Name: "prune", Schedule: func(s policy.Schedule) policy.CronSpec { return s.Prune },
			Mutating: func(*policy.Policy) bool { return true },
			Events:   []report.EventKind{shared, {Kind: "a_kind", MessageID: "11111111111111111111111111111111", Title: "a"}},
			Gauges:   []Gauge{{Name: "stowage_prune_x", Help: "x", Figures: []Figure{{Key: "x"}}}}},
		{Name: "volumes", Schedule: func(s policy.Schedule) policy.CronSpec { return s.Volumes },
			Mutating: func(*policy.Policy) bool { return false },
			Events:   []report.EventKind{shared}},
	}
}

func TestRegistryLookups(t *testing.T) {
	r := toys()
	if got := r.Names(); !slices.Equal(got, []string{"prune", "volumes"}) {
		t.Errorf("Names = %v", got)
	}
	if d, ok := r.Lookup("volumes"); !ok || d.Name != "volumes" {
		t.Errorf("Lookup(volumes) = %v, %t", d.Name, ok)
	}
	if _, ok := r.Lookup("nope"); ok {
		t.Error("Lookup found an unknown job")
	}
	var kinds []string
	for _, k := range r.EventKinds() {
		kinds = append(kinds, k.Kind)
		if l, ok := r.LookupEvent(k.Kind); !ok || l != k {
			t.Errorf("LookupEvent(%s) = %+v, %t", k.Kind, l, ok)
		}
	}
	if !slices.Equal(kinds, []string{"shared_kind", "a_kind"}) {
		t.Errorf("EventKinds = %v: each once, in the registry's order", kinds)
	}
	if _, ok := r.LookupEvent("nope"); ok {
		t.Error("LookupEvent found an unknown kind")
	}
	if _, ok := Registry(nil).Lookup("prune"); ok {
		t.Error("an empty registry found a job")
	}
}

func TestValidate(t *testing.T) {
	if err := toys().Validate(); err != nil {
		t.Fatalf("valid registry: %v", err)
	}
	for _, tt := range []struct {
		name   string
		mangle func(r Registry) Registry
		want   string
	}{
		{"repeated name", func(r Registry) Registry { return append(r, r[0]) }, `job name "prune" empty or repeated`},
		{"empty name", func(r Registry) Registry { r[1].Name = ""; return r }, `job name "" empty`},
		{"no schedule", func(r Registry) Registry { r[1].Schedule = nil; return r }, "no schedule or mutating rule"},
		{"other job's key", func(r Registry) Registry {
			r[1].Schedule = func(s policy.Schedule) policy.CronSpec { return s.Verify }
			return r
		}, `scheduled by [schedule] "verify"`},
		{"gauge prefix", func(r Registry) Registry { r[0].Gauges[0].Name = "stowage_other_x"; return r }, "want a unique stowage_prune_ name"},
		{"figure label", func(r Registry) Registry { r[0].Gauges[0].Figures[0].Label = "l"; return r }, "key and label value"},
		{"kind declared twice", func(r Registry) Registry {
			r[1].Events = []report.EventKind{{Kind: "shared_kind", MessageID: "22222222222222222222222222222222", Title: "x"}}
			return r
		}, "declared differently"},
		{"bad message id", func(r Registry) Registry {
			r[1].Events = []report.EventKind{{Kind: "b", MessageID: "XYZ", Title: "b"}}
			return r
		}, "not 32 hex digits"},
		{"shared message id", func(r Registry) Registry {
			r[1].Events = []report.EventKind{{Kind: "b", MessageID: "11111111111111111111111111111111", Title: "b"}}
			return r
		}, "share MESSAGE_ID"},
	} {
		err := tt.mangle(toys()).Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
