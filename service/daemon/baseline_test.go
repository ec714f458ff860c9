package daemon

import (
	"reflect"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/scheduler"
)

func TestPlanBaselines(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	cron := func(spec string) scheduler.Job {
		s, err := policy.ParseCron(spec)
		if err != nil {
			t.Fatal(err)
		}
		return scheduler.Job{Spec: spec, Schedule: s}
	}
	named := func(name string, j scheduler.Job) scheduler.Job { j.Name = name; return j }
	prune, verify := named("prune", cron("@hourly")), named("verify", cron("*/2 * * * *"))
	off := scheduler.Job{Name: "volumes"}
	earlier := now.Add(-5 * time.Hour)
	cases := []struct {
		name    string
		stored  map[string]seen
		jobs    []scheduler.Job
		last    map[string]time.Time
		want    map[string]seen
		changed bool
	}{
		{"fresh install", nil, []scheduler.Job{prune, off},
			nil, map[string]seen{"prune": {"@hourly", now}}, true},
		{"unchanged keeps its first sight", map[string]seen{"prune": {"@hourly", earlier}}, []scheduler.Job{prune},
			nil, map[string]seen{"prune": {"@hourly", earlier}}, false},
		{"changed schedule starts over", map[string]seen{"verify": {"@daily", earlier}}, []scheduler.Job{verify},
			map[string]time.Time{"verify": earlier}, map[string]seen{"verify": {"*/2 * * * *", now}}, true},
		{"first sight of a job that ran: its last run", nil, []scheduler.Job{prune},
			map[string]time.Time{"prune": earlier}, map[string]seen{"prune": {"@hourly", earlier}}, true},
		{"unscheduled job forgotten", map[string]seen{"prune": {"@hourly", earlier}, "volumes": {"@weekly", earlier}}, []scheduler.Job{prune, off},
			nil, map[string]seen{"prune": {"@hourly", earlier}}, true},
		{"first sight in the future (clock went back)", map[string]seen{"prune": {"@hourly", now.Add(time.Hour)}}, []scheduler.Job{prune},
			nil, map[string]seen{"prune": {"@hourly", now}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, changed := planBaselines(c.stored, c.jobs, c.last, now)
			if !reflect.DeepEqual(got, c.want) || changed != c.changed {
				t.Fatalf("planBaselines = %v, %v; want %v, %v", got, changed, c.want, c.changed)
			}
		})
	}
}
