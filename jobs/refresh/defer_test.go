package refresh

import (
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// TestDeferredPulls: with pulls deferred (the daemon's decision on a
// metered connection or battery) a pull-mode run still checks every tag
// and reports the drift and the newer version, but pulls neither; it says
// so in the results, the summary and its figures. The next run without
// the deferral pulls both.
func TestDeferredPulls(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	app := w.reg.Addr + "/app"
	w.push("app:1.25")
	w.pull(app + ":1.25")
	old := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", app+":1.25")
	drift := w.push("app:1.25")
	w.push("app:1.26")

	p := defaultRefresh()
	p.Newer = policy.NewerMinor
	p.Rules = []policy.RefreshRule{{Match: app, Mode: policy.RefreshPull, PullNewer: true}}
	rep := w.runWith(p, Options{DeferPulls: "metered connection"})
	r := byRef(rep)[app+":1.25"]
	if r.Status != StatusDrifted || r.RemoteDigest != drift || !r.New || r.PulledImageID != "" || r.Note != "pull deferred: metered connection" {
		t.Fatalf("deferred run: %+v", r)
	}
	if n := newerByRef(rep)[app+":1.25"]; n.Newer != "1.26" || n.PulledImageID != "" || n.Note != "pull deferred: metered connection" {
		t.Fatalf("deferred newer version: %+v", n)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", app+":1.25"); got != old {
		t.Fatalf("the tag moved to %s during a deferred run", got)
	}
	if _, err := testenv.RunErr(w.host.Env, "podman", append(w.host.Flags(), "image", "exists", app+":1.26")...); err == nil {
		t.Fatal("the newer version was pulled during a deferred run")
	}
	if rep.PullsDeferred != "metered connection" || rep.Metrics[report.MetricPullsDeferred] != 2 || rep.Metrics["pulled"] != 0 {
		t.Fatalf("report: deferred %q figures %v", rep.PullsDeferred, rep.Metrics)
	}
	if !strings.Contains(rep.Summary, "pulls deferred: metered connection (2 not pulled)") {
		t.Fatalf("summary %q does not say pulls were deferred", rep.Summary)
	}
	var kinds []string
	for _, e := range rep.Events {
		kinds = append(kinds, e.Kind)
	}
	if strings.Contains(strings.Join(kinds, ","), report.EventImagePulled) || !strings.Contains(strings.Join(kinds, ","), report.EventDriftDetected) {
		t.Fatalf("events %v: want the drift, no pull", kinds)
	}

	// The condition cleared: the same policy pulls both.
	rep = w.runWith(p, Options{})
	if r := byRef(rep)[app+":1.25"]; r.PulledImageID == "" || r.Note != "" {
		t.Fatalf("catch-up run: %+v", r)
	}
	if n := newerByRef(rep)[app+":1.25"]; n.PulledImageID == "" {
		t.Fatalf("catch-up run, newer version: %+v", n)
	}
	if rep.PullsDeferred != "" || rep.Metrics[report.MetricPullsDeferred] != 0 || strings.Contains(rep.Summary, "deferred") {
		t.Fatalf("catch-up report: deferred %q figures %v summary %q", rep.PullsDeferred, rep.Metrics, rep.Summary)
	}
}
