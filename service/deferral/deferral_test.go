package deferral

import (
	"slices"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

func pol(t *testing.T, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(policy.Source{Name: "p.toml", Data: []byte(src)})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	pull := "[refresh]\nmode = \"pull\"\n"
	ruleOnly := "[[refresh.rule]]\nmatch = \"quay.io/*\"\nmode = \"pull\"\n"
	integ := "[verify]\nintegrity = true\n"
	metered, battery, both := Conditions{Metered: true}, Conditions{OnBattery: true}, Conditions{Metered: true, OnBattery: true}
	for _, tc := range []struct {
		name   string
		policy string
		job    string
		dry    bool
		c      Conditions
		want   Decision
	}{
		{"pull mode, metered", pull, "refresh", false, metered, Decision{Pulls: ReasonMetered}},
		{"pull mode, battery", pull, "refresh", false, battery, Decision{Pulls: ReasonBattery}},
		{"pull mode, both", pull, "refresh", false, both, Decision{Pulls: ReasonMetered + ", " + ReasonBattery}},
		{"pull mode, neither", pull, "refresh", false, Conditions{}, Decision{}},
		{"a pull rule is enough", ruleOnly, "refresh", false, metered, Decision{Pulls: ReasonMetered}},
		{"notify mode pulls nothing to defer", "", "refresh", false, both, Decision{}},
		{"dry run defers nothing", pull, "refresh", true, both, Decision{}},
		{"refresh off", "[refresh]\nmode = \"off\"\n" + ruleOnly, "refresh", false, both, Decision{}},
		{"battery list emptied", pull + "[schedule]\ndefer_on_battery = []\n", "refresh", false, both, Decision{Pulls: ReasonMetered}},
		{"metered list emptied", pull + "[schedule]\ndefer_on_metered = []\n", "refresh", false, metered, Decision{}},
		{"integrity not deferred by default", integ, "verify", false, both, Decision{}},
		{"integrity deferred on battery", integ + "[schedule]\ndefer_on_battery = [\"integrity\"]\n", "verify", false, battery, Decision{Integrity: ReasonBattery}},
		{"integrity deferred, not metered now", integ + "[schedule]\ndefer_on_battery = [\"integrity\"]\n", "verify", false, metered, Decision{}},
		{"integrity off: nothing to defer", "[schedule]\ndefer_on_metered = [\"integrity\"]\n", "verify", false, metered, Decision{}},
		{"integrity in the refresh list does not defer pulls", pull + "[schedule]\ndefer_on_metered = [\"integrity\"]\n", "refresh", false, metered, Decision{}},
		{"pulls in the verify list do not defer integrity", integ, "verify", false, metered, Decision{}},
		{"prune is never deferred", pull + integ + "[schedule]\ndefer_on_metered = [\"integrity\", \"pulls\"]\n", "prune", false, both, Decision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Decide(pol(t, tc.policy), tc.job, tc.dry, tc.c); got != tc.want {
				t.Fatalf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestArgs(t *testing.T) {
	if a := (Decision{}).Args(); len(a) != 0 {
		t.Fatalf("nothing deferred: %q", a)
	}
	got := Decision{Pulls: ReasonMetered, Integrity: ReasonBattery}.Args()
	want := []string{"--defer-pulls", "metered connection", "--defer-integrity", "on battery"}
	if !slices.Equal(got, want) {
		t.Fatalf("Args = %q, want %q", got, want)
	}
}

func TestLeft(t *testing.T) {
	d := Decision{Pulls: ReasonMetered, Integrity: ReasonBattery}
	for _, tc := range []struct {
		name    string
		d       Decision
		metrics map[string]float64
		want    Decision
	}{
		{"pulls skipped", d, map[string]float64{report.MetricPullsDeferred: 2}, Decision{Pulls: ReasonMetered}},
		{"nothing to pull", d, map[string]float64{report.MetricPullsDeferred: 0, "drifted": 0}, Decision{}},
		{"integrity skipped", d, map[string]float64{report.MetricIntegrityDeferred: 1}, Decision{Integrity: ReasonBattery}},
		{"no figures", d, nil, Decision{}},
		{"figure without a decision", Decision{}, map[string]float64{report.MetricPullsDeferred: 3}, Decision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Left(tc.d, tc.metrics); got != tc.want {
				t.Fatalf("Left = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestOwedDue(t *testing.T) {
	o := Owed{}
	o.Record("refresh", Decision{Pulls: ReasonMetered})
	o.Record("verify", Decision{Integrity: ReasonBattery})
	o.Record("prune", Decision{})
	now := map[string]Decision{}
	decide := func(job string) Decision { return now[job] }

	for _, tc := range []struct {
		name string
		now  map[string]Decision
		want []string
	}{
		{"still metered and on battery", map[string]Decision{"refresh": {Pulls: ReasonMetered}, "verify": {Integrity: ReasonBattery}}, nil},
		{"metered cleared, battery still on: only the reason changed", map[string]Decision{"refresh": {Pulls: ReasonBattery}, "verify": {Integrity: ReasonBattery}}, nil},
		{"battery cleared", map[string]Decision{"refresh": {Pulls: ReasonMetered}}, []string{"verify"}},
		{"all clear", map[string]Decision{}, []string{"refresh", "verify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = tc.now
			if got := o.Due(decide); !slices.Equal(got, tc.want) {
				t.Fatalf("Due = %v, want %v", got, tc.want)
			}
		})
	}
	// A run that deferred nothing settles what its job owed.
	o.Record("refresh", Decision{})
	now = map[string]Decision{}
	if got := o.Due(decide); !slices.Equal(got, []string{"verify"}) {
		t.Fatalf("after a full refresh run Due = %v, want [verify]", got)
	}
}
