package volumes

import (
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/policy"
)

func dur(d time.Duration) policy.Duration { return policy.Duration{Duration: d} }

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := now.Add(-1000 * time.Hour)
	def := policy.Volumes{AnonymousOnly: true, MinAge: dur(720 * time.Hour), KeepLabels: []string{"io.stowage.keep"}}
	anon := podmanapi.Volume{Name: "0123abcd", Anonymous: true, CreatedAt: old}
	named := podmanapi.Volume{Name: "cache-build", CreatedAt: old}
	withLabels := func(v podmanapi.Volume, l map[string]string) podmanapi.Volume { v.Labels = l; return v }
	at := func(v podmanapi.Volume, c time.Time) podmanapi.Volume { v.CreatedAt = c; return v }
	set := func(f func(*policy.Volumes)) policy.Volumes { p := def; f(&p); return p }

	tests := []struct {
		name     string
		v        podmanapi.Volume
		dangling bool
		links    int
		p        policy.Volumes
		want     string
		ok       bool
	}{
		{"old anonymous dangling goes", anon, true, 0, def, ReasonAnonymous, true},
		{"not dangling stays", anon, false, 0, def, ReasonInUse, false},
		{"dangling but df links a container stays", anon, true, 1, def, ReasonInUse, false},
		{"named stays with anonymous_only", named, true, 0, def, ReasonNamed, false},
		{"named goes when anonymous_only is off", named, true, 0, set(func(p *policy.Volumes) { p.AnonymousOnly = false }), ReasonNamedOK, true},
		{"named goes when an include glob matches", named, true, 0, set(func(p *policy.Volumes) { p.Include = []string{"cache-*"} }), ReasonIncluded, true},
		{"include glob not matching keeps it", named, true, 0, set(func(p *policy.Volumes) { p.Include = []string{"tmp-*"} }), ReasonNamed, false},
		{"keep glob beats include", named, true, 0, set(func(p *policy.Volumes) { p.Include = []string{"cache-*"}; p.Keep = []string{"*-build"} }), ReasonKeepGlob, false},
		{"keep glob keeps anonymous too", anon, true, 0, set(func(p *policy.Volumes) { p.Keep = []string{"0123*"} }), ReasonKeepGlob, false},
		{"keep label key", withLabels(anon, map[string]string{"io.stowage.keep": ""}), true, 0, def, ReasonKeepLabel, false},
		{"other label does not keep", withLabels(anon, map[string]string{"app": "x"}), true, 0, def, ReasonAnonymous, true},
		{"keep label key=value matches", withLabels(anon, map[string]string{"tier": "db"}), true, 0, set(func(p *policy.Volumes) { p.KeepLabels = []string{"tier=db"} }), ReasonKeepLabel, false},
		{"keep label key=value other value", withLabels(anon, map[string]string{"tier": "web"}), true, 0, set(func(p *policy.Volumes) { p.KeepLabels = []string{"tier=db"} }), ReasonAnonymous, true},
		{"too new", at(anon, now.Add(-time.Hour)), true, 0, def, ReasonTooNew, false},
		{"just old enough", at(anon, now.Add(-720*time.Hour)), true, 0, def, ReasonAnonymous, true},
		{"unknown creation time stays", at(anon, time.Time{}), true, 0, def, ReasonTooNew, false},
		{"min_age 0 ignores age", at(anon, now), true, 0, set(func(p *policy.Volumes) { p.MinAge = dur(0) }), ReasonAnonymous, true},
		{"included named but too new", at(named, now), true, 0, set(func(p *policy.Volumes) { p.Include = []string{"*"} }), ReasonTooNew, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail, ok := Decide(tt.v, tt.dangling, tt.links, tt.p, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Decide = %q (%s), %v; want %q, %v", got, detail, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestMakePlan(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	old := now.Add(-48 * time.Hour)
	s := Snapshot{
		Volumes: []podmanapi.Volume{
			{Name: "b-anon", Anonymous: true, CreatedAt: old},
			{Name: "a-anon", Anonymous: true, CreatedAt: old},
			{Name: "used", Anonymous: true, CreatedAt: old},
			{Name: "named", CreatedAt: old},
		},
		Dangling: map[string]bool{"a-anon": true, "b-anon": true, "named": true},
		Usage: map[string]podmanapi.VolumeUsage{
			"a-anon": {VolumeName: "a-anon", Size: 100},
			"b-anon": {VolumeName: "b-anon", Size: 23},
			"used":   {VolumeName: "used", Size: 7, Links: 1},
		},
	}
	pl := MakePlan(s, policy.Volumes{AnonymousOnly: true, MinAge: dur(24 * time.Hour)}, now)
	if len(pl.Remove) != 2 || pl.Remove[0].Name != "a-anon" || pl.Remove[1].Name != "b-anon" {
		t.Fatalf("Remove = %+v, want a-anon, b-anon (sorted)", pl.Remove)
	}
	if got := Bytes(pl.Remove); got != 123 {
		t.Errorf("Bytes(Remove) = %d, want 123", got)
	}
	if !pl.Remove[0].Created.Equal(old) || !pl.Remove[0].Anonymous {
		t.Errorf("item lost its metadata: %+v", pl.Remove[0])
	}
	reasons := map[string]string{}
	for _, it := range pl.Keep {
		reasons[it.Name] = it.Reason
	}
	if reasons["used"] != ReasonInUse || reasons["named"] != ReasonNamed || len(pl.Keep) != 2 {
		t.Errorf("Keep = %+v", pl.Keep)
	}
}
