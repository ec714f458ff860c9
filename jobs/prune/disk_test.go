package prune_test

import (
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestFreedIsDisk: prune's usage, plan and freed bytes are the allocated
// bytes the filesystem holds and gets back, on vfs (whose layers are full
// copies of their parents: the store's diff sizes are a fraction of it) and
// overlay.
func TestFreedIsDisk(t *testing.T) {
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			e := newEnv(t, driver)
			p := e.p
			imp(t, p, "localhost/base:1", "base-content-")
			for _, n := range []string{"app1", "app2", "app3"} {
				p.Build(t, "localhost/"+n+":1", "localhost/base:1", map[string]string{"/" + n: n + string(make([]byte, 200_000))})
			}
			p.Run(t, "create", "--name", "stwg-keep", "localhost/app3:1", "true")
			e.writePolicy(t, `min_age = "0"
keep_last = 0
quota = "1KiB"`)
			dry := e.prune(t, "--dry-run")
			before, err := testenv.AllocatedBytes(p.Root)
			if err != nil {
				t.Fatal(err)
			}
			r := e.prune(t)
			after, err := testenv.AllocatedBytes(p.Root)
			if err != nil {
				t.Fatal(err)
			}
			freed := before - after
			tol := func(a, b int64) bool { d := a - b; m := max(b/100, 64<<10); return d <= m && d >= -m }
			if r.FreedBytes != dry.PlannedFreeBytes || !tol(r.FreedBytes, freed) {
				t.Errorf("freed %d (planned %d), the filesystem got back %d", r.FreedBytes, dry.PlannedFreeBytes, freed)
			}
			// Usage is the store on disk, bar its metadata files.
			if r.UsageBeforeBytes > before || before-r.UsageBeforeBytes > 512<<10 {
				t.Errorf("usage before %d, store directory %d", r.UsageBeforeBytes, before)
			}
			if len(r.Removed) != 3 { // app1, app2, base's record; app3 is in use
				t.Errorf("removed %d items: %+v", len(r.Removed), r.Removed)
			}
			t.Logf("%s: usage %d → %d, freed %d, disk gave back %d", driver, r.UsageBeforeBytes, r.UsageAfterBytes, r.FreedBytes, freed)
		})
	}
}
