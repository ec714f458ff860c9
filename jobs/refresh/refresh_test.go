package refresh

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

func TestRefreshDrift(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	a, b, c := w.reg.Addr+"/app/a:1", w.reg.Addr+"/app/b:1", w.reg.Addr+"/app/c:1"
	w.push("app/a:1")
	w.push("app/b:1")
	dc := w.push("app/c:1")
	for _, r := range []string{a, b, c} {
		w.pull(r)
	}
	cID := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", c)

	base := registryLog(t, w.reg)
	rep := w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{a: StatusCurrent, b: StatusCurrent, c: StatusCurrent})
	after := registryLog(t, w.reg)
	// The registry's own log: unchanged tags cost one HEAD each, no GET.
	if h, g := after["HEAD"]-base["HEAD"], after["GET"]-base["GET"]; h != 3 || g != 0 {
		t.Errorf("registry log: %d HEAD, %d GET manifest requests for 3 unchanged tags; want 3, 0", h, g)
	}
	if rep.HeadRequests != 3 || rep.GetRequests != 0 || rep.Registries[w.reg.Addr].Head != 3 {
		t.Errorf("counters: head %d get %d per registry %+v", rep.HeadRequests, rep.GetRequests, rep.Registries)
	}
	if len(rep.Events) != 0 {
		t.Errorf("events without drift: %+v", rep.Events)
	}

	// New content under b only: exactly b drifts, once as new.
	db2 := w.push("app/b:1")
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{a: StatusCurrent, b: StatusDrifted, c: StatusCurrent})
	rb := byRef(rep)[b]
	if rb.RemoteDigest != db2 || !rb.New {
		t.Errorf("b: remote %s new %t, want %s new", rb.RemoteDigest, rb.New, db2)
	}
	if rep.GetRequests != 0 {
		t.Errorf("a drifted single-image tag needs no GET, got %d", rep.GetRequests)
	}
	if len(rep.Events) != 1 || rep.Events[0].Kind != report.EventDriftDetected || rep.Events[0].Reference != b || rep.Events[0].Digest != db2 {
		t.Errorf("events: %+v", rep.Events)
	}
	if rep.Metrics["drifted"] != 1 || rep.Metrics["current"] != 2 {
		t.Errorf("metrics: %v", rep.Metrics)
	}
	rep = w.run(defaultRefresh(), nil, false)
	if rb := byRef(rep)[b]; rb.Status != StatusDrifted || rb.New || len(rep.Events) != 0 {
		t.Errorf("second sighting of the same drift: %+v events %+v", rb, rep.Events)
	}
	recs, err := History(w.db, b)
	if err != nil || len(recs) != 1 || len(recs[0].Seen) != 2 || recs[0].Seen[1].Digest != db2 || !recs[0].Seen[1].Drift {
		t.Errorf("history of b: %+v, %v", recs, err)
	}
	// The pending drift's age runs from its first sighting, not this run.
	if first := recs[0].Seen[1].FirstSeen; err == nil && (rep.Metrics["drift_pending"] != 1 || rep.Metrics["drift_oldest_first_seen"] != float64(first.Unix()) || !first.Before(rep.Started)) {
		t.Errorf("pending drift figures %v, first seen %v (run started %v)", rep.Metrics, first, rep.Started)
	}

	// Dry-run reports the drift as new but does not record it.
	dc2 := w.push("app/c:1")
	for i := 0; i < 2; i++ {
		rep = w.run(defaultRefresh(), nil, i == 0)
		if rc := byRef(rep)[c]; rc.Status != StatusDrifted || !rc.New || rc.RemoteDigest != dc2 {
			t.Errorf("run %d (dry-run %t): c = %+v", i, i == 0, rc)
		}
	}

	// Deleted tag, missing repository, blocked registry, localhost name.
	w.host.Run(t, "tag", a, w.reg.Addr+"/nope/x:1", "blocked.example/app/a:1", "localhost/app/a:1")
	testenvRun(t, "skopeo", "delete", "--tls-verify=false", "docker://"+a)
	w.setRegistries("[[registry]]\nlocation = \"" + w.reg.Addr + "\"\ninsecure = true\n[[registry]]\nlocation = \"blocked.example\"\nblocked = true\n")
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{
		a: StatusMissing, w.reg.Addr + "/nope/x:1": StatusMissing, "blocked.example/app/a:1": StatusBlocked,
	})
	if _, ok := byRef(rep)["localhost/app/a:1"]; ok {
		t.Error("a localhost/ name was checked")
	}
	if _, ok := rep.Registries["blocked.example"]; ok {
		t.Error("a blocked registry was contacted")
	}

	// Pull mode for c: the tag moves to the new content, the old image stays.
	p := defaultRefresh()
	p.Rules = []policy.RefreshRule{{Match: w.reg.Addr + "/app/c*", Mode: policy.RefreshPull}}
	// A dry run in pull mode pulls nothing.
	rep = w.run(p, nil, true)
	if rc := byRef(rep)[c]; rc.Status != StatusDrifted || rc.PulledImageID != "" {
		t.Errorf("dry run in pull mode: %+v", rc)
	}

	// The signature policy is enforced: a rejecting policy.json stops the pull.
	reject := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(reject, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	rep = w.run(p, &types.SystemContext{SignaturePolicyPath: reject}, false)
	if rc := byRef(rep)[c]; rc.Status != StatusDrifted || rc.PulledImageID != "" || !strings.Contains(rc.Error, "rejected") {
		t.Errorf("pull under a rejecting policy: %+v", rc)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", c); got != cID {
		t.Errorf("a rejected pull moved the tag to %s", got)
	}
	if rep.Metrics["drift_pending"] != 2 {
		t.Errorf("b and c drifted, not pulled: drift_pending %v", rep.Metrics["drift_pending"])
	}
	rep = w.run(p, nil, false)
	rc := byRef(rep)[c]
	if rc.Status != StatusDrifted || rc.PulledImageID == "" || rc.PulledImageID == cID {
		t.Fatalf("pull mode: %+v", rc)
	}
	pulled := false
	for _, e := range rep.Events {
		pulled = pulled || e.Kind == report.EventImagePulled && e.Reference == c && e.Digest == dc2
	}
	if !pulled {
		t.Errorf("no image_pulled event: %+v", rep.Events)
	}
	if rep.Metrics["drift_pending"] != 1 || rep.Metrics["pulled"] != 1 {
		t.Errorf("c pulled, b still pending: %v", rep.Metrics)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", c); got != rc.PulledImageID {
		t.Errorf("tag %s points to %s, want the pulled %s", c, got, rc.PulledImageID)
	}
	w.host.Run(t, "image", "inspect", cID) // the old image is kept
	rep = w.run(p, nil, false)
	if rc := byRef(rep)[c]; rc.Status != StatusCurrent {
		t.Errorf("after the pull c is %s", rc.Status)
	}
	_ = dc
}
