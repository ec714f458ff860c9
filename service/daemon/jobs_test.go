package daemon

import (
	"slices"
	"testing"

	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/scheduler"
	"github.com/stowage/stowage/test/testjobs"
)

// TestScheduleConfigIteratesJobs: the daemon schedules every job it is
// given, by its descriptor's schedule key and mutating rule; a job added
// to the registry needs nothing in the daemon.
func TestScheduleConfigIteratesJobs(t *testing.T) {
	toy := jobspec.Descriptor{
		Name:     "toy",
		Schedule: func(s policy.Schedule) policy.CronSpec { return s.Volumes },
		Mutating: func(p *policy.Policy) bool { return p.Volumes.Enabled },
	}
	for _, tt := range []struct {
		name string
		toml string
		want map[string]bool // mutating, per job

	}{
		{"default", "version = 1\n", nil},
		{"all mutating", "version = 1\n[refresh]\nmode = \"pull\"\n[verify]\nmode = \"untag\"\n[prune]\nenabled = true\n[volumes]\nenabled = true\n",
			map[string]bool{"refresh": true, "verify": true, "prune": true, "volumes": true, "toy": true}},
		{"refresh rule pulls", "version = 1\n[refresh]\nmode = \"notify\"\n[[refresh.rule]]\nmatch = \"docker.io/*\"\nmode = \"pull\"\n[prune]\nenabled = false\n[volumes]\nenabled = false\n[verify]\nmode = \"report\"\n",
			map[string]bool{"refresh": true, "verify": false, "prune": false, "volumes": false, "toy": false}},
		{"nothing mutating", "version = 1\n[refresh]\nmode = \"notify\"\n[verify]\nmode = \"remove\"\n[prune]\nenabled = false\n[volumes]\nenabled = false\n[schedule]\nvolumes = \"@every 2h\"\n",
			map[string]bool{"refresh": false, "verify": true, "prune": false, "volumes": false, "toy": false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := policy.Source{Name: "stowage.toml", Data: []byte(tt.toml)}
			p, err := policy.Parse(src)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := scheduleConfig(&policy.Snapshot{Policy: p, Sources: []policy.Source{src}}, append(testjobs.Registry(), toy))
			if err != nil {
				t.Fatal(err)
			}
			names := make([]string, len(cfg.Jobs))
			for i, j := range cfg.Jobs {
				names[i] = j.Name
			}
			if want := append(testjobs.Registry().Names(), "toy"); !slices.Equal(names, want) {
				t.Fatalf("jobs %v, want %v", names, want)
			}
			byName := map[string]scheduler.Job{}
			for _, j := range cfg.Jobs {
				byName[j.Name] = j
			}
			if byName["toy"].Spec != p.Schedule.Volumes.Spec || byName["prune"].Spec != p.Schedule.Prune.Spec {
				t.Errorf("toy spec %q (volumes %q), prune spec %q (%q)", byName["toy"].Spec, p.Schedule.Volumes.Spec, byName["prune"].Spec, p.Schedule.Prune.Spec)
			}
			if tt.want == nil {
				return
			}
			for name, want := range tt.want {
				if got := byName[name].Mutating; got != want {
					t.Errorf("%s mutating %t, want %t", name, got, want)
				}
			}
		})
	}
}
