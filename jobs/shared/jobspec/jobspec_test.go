package jobspec

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// TestRegistry: names are unique, every descriptor is complete, each
// job's schedule is its own [schedule] key (the field tagged with its
// name), and its gauges are its own.
func TestRegistry(t *testing.T) {
	var s policy.Schedule
	sv := reflect.ValueOf(&s).Elem()
	for i := range sv.NumField() {
		if c, ok := sv.Field(i).Addr().Interface().(*policy.CronSpec); ok {
			c.Spec = strings.Split(sv.Type().Field(i).Tag.Get("toml"), ",")[0]
		}
	}
	seen := map[string]bool{}
	for _, d := range All() {
		if d.Name == "" || seen[d.Name] {
			t.Errorf("job name %q empty or repeated", d.Name)
		}
		seen[d.Name] = true
		if d.Schedule == nil || d.Mutating == nil {
			t.Fatalf("%s: no schedule or mutating rule", d.Name)
		}
		if got := d.Schedule(s).Spec; got != d.Name {
			t.Errorf("%s: scheduled by [schedule] %s", d.Name, got)
		}
		for _, g := range d.Gauges {
			if !strings.HasPrefix(g.Name, "stowage_"+d.Name+"_") || g.Help == "" || len(g.Figures) == 0 || seen[g.Name] {
				t.Errorf("%s: gauge %+v: want a unique stowage_%s_ name, help and figures", d.Name, g, d.Name)
			}
			seen[g.Name] = true
			for _, f := range g.Figures {
				if f.Key == "" || (f.Label == "") != (g.Label == "") {
					t.Errorf("%s: gauge %s figure %+v: key and label value (iff the gauge has a label) required", d.Name, g.Name, f)
				}
			}
		}
		if l, ok := Lookup(d.Name); !ok || l.Name != d.Name {
			t.Errorf("Lookup(%s) = %v, %t", d.Name, l.Name, ok)
		}
	}
	if names := Names(); !slices.Equal(names[:4], []string{"refresh", "verify", "prune", "volumes"}) {
		t.Errorf("jobs %v: the first four keep their order (status, metrics)", names)
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup found an unknown job")
	}
}

// TestMutatingAndNamespace: who may change storage and who must enter the
// rootless user namespace, per policy.
func TestMutatingAndNamespace(t *testing.T) {
	def := policy.Default()
	pull := policy.Default()
	pull.Refresh.Rules = append(pull.Refresh.Rules, policy.RefreshRule{Match: "x/*", Mode: policy.RefreshPull})
	untag := policy.Default()
	untag.Verify.Mode = policy.VerifyUntag
	integ := policy.Default()
	integ.Verify.Integrity = true
	for _, tt := range []struct {
		name    string
		d       Descriptor
		p       *policy.Policy
		dryRun  bool
		mut, ns bool
	}{
		{"refresh default", Refresh, def, false, def.Refresh.MayPull(), def.Refresh.MayPull()},
		{"refresh rule pulls", Refresh, pull, false, true, true},
		{"refresh rule pulls, dry", Refresh, pull, true, true, false},
		{"verify untag", Verify, untag, false, true, true},
		{"verify untag, dry", Verify, untag, true, true, false},
		{"verify integrity, dry", Verify, integ, true, verifyMutating(integ), true},
		{"prune", Prune, def, false, def.Prune.Enabled, true},
		{"prune, dry", Prune, def, true, def.Prune.Enabled, false},
		{"volumes", Volumes, def, false, def.Volumes.Enabled, false},
	} {
		if got := tt.d.Mutating(tt.p); got != tt.mut {
			t.Errorf("%s: mutating %t, want %t", tt.name, got, tt.mut)
		}
		ns := tt.d.UserNamespace != nil && tt.d.UserNamespace(tt.p, tt.dryRun)
		if ns != tt.ns {
			t.Errorf("%s: user namespace %t, want %t", tt.name, ns, tt.ns)
		}
	}
}

// TestEventKinds: every kind is declared once (a kind two jobs report is
// the same value), with a distinct 32-hex MESSAGE_ID and a title.
func TestEventKinds(t *testing.T) {
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	byKind := map[string]report.EventKind{}
	ids := map[string]string{}
	for _, d := range All() {
		for _, k := range d.Events {
			if prev, ok := byKind[k.Kind]; ok && prev != k {
				t.Errorf("kind %s declared differently: %+v and %+v", k.Kind, prev, k)
			}
			byKind[k.Kind] = k
			if !hex.MatchString(k.MessageID) || k.Title == "" {
				t.Errorf("kind %+v: bad MESSAGE_ID or no title", k)
			}
			if other, ok := ids[k.MessageID]; ok && other != k.Kind {
				t.Errorf("kinds %s and %s share MESSAGE_ID %s", k.Kind, other, k.MessageID)
			}
			ids[k.MessageID] = k.Kind
		}
	}
	var kinds []string
	for _, k := range EventKinds() {
		kinds = append(kinds, k.Kind)
		if l, ok := LookupEvent(k.Kind); !ok || l != k {
			t.Errorf("LookupEvent(%s) = %+v, %t", k.Kind, l, ok)
		}
	}
	if len(kinds) != len(byKind) || len(slices.Compact(slices.Sorted(slices.Values(kinds)))) != len(kinds) {
		t.Errorf("EventKinds %v, declared %d kinds", kinds, len(byKind))
	}
}
