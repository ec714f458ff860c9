package policy

import (
	"slices"
	"strings"
	"testing"
)

// TestDeferKeys: the deferral lists default to pulls, replace (not extend)
// the default when set, and reject unknown work, duplicates and wrong types
// at the value's FILE:LINE:COL.
func TestDeferKeys(t *testing.T) {
	d := Default().Schedule
	if !slices.Equal(d.DeferOnMetered, []DeferWork{DeferPulls}) || !slices.Equal(d.DeferOnBattery, []DeferWork{DeferPulls}) {
		t.Fatalf("defaults: metered %v battery %v, want [pulls] each", d.DeferOnMetered, d.DeferOnBattery)
	}
	for _, tc := range []struct {
		name, src        string
		metered, battery []DeferWork
		wantErr          string
	}{
		{name: "both kinds", src: "[schedule]\ndefer_on_metered = [\"integrity\", \"pulls\"]\n",
			metered: []DeferWork{DeferIntegrity, DeferPulls}, battery: []DeferWork{DeferPulls}},
		{name: "nothing", src: "[schedule]\ndefer_on_metered = []\ndefer_on_battery = []\n",
			metered: []DeferWork{}, battery: []DeferWork{}},
		{name: "integrity only on battery", src: "[schedule]\ndefer_on_battery = [\"integrity\"]\n",
			metered: []DeferWork{DeferPulls}, battery: []DeferWork{DeferIntegrity}},
		{name: "unknown work", src: "[schedule]\ndefer_on_metered = [\"pulls\", \"prune\"]\n",
			wantErr: `p.toml:2:30: schedule.defer_on_metered.1: invalid deferrable work "prune" (want "pulls" or "integrity")`},
		{name: "boolean", src: "[schedule]\ndefer_on_battery = true\n",
			wantErr: "p.toml:2:20: schedule.defer_on_battery: expected an array, got boolean true"},
		{name: "not a string", src: "[schedule]\ndefer_on_battery = [1]\n",
			wantErr: "p.toml:2:21: schedule.defer_on_battery.0: expected a string, got integer 1"},
		{name: "twice", src: "[schedule]\n\ndefer_on_metered = [\"pulls\", \"pulls\"]\n",
			wantErr: `p.toml:3:20: schedule.defer_on_metered: "pulls" is listed twice`},
		{name: "typo", src: "[schedule]\ndefer_on_metred = []\n",
			wantErr: `p.toml:2:1: unknown key "schedule.defer_on_metred" (did you mean "defer_on_metered"?)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(Source{"p.toml", []byte(tc.src)})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := p.Schedule
			if !slices.Equal(s.DeferOnMetered, tc.metered) || !slices.Equal(s.DeferOnBattery, tc.battery) {
				t.Fatalf("metered %v battery %v, want %v %v", s.DeferOnMetered, s.DeferOnBattery, tc.metered, tc.battery)
			}
		})
	}
}
