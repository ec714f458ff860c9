package refresh

import (
	"bytes"
	"context"
	"path/filepath"
	"time"

	"go.podman.io/image/v5/types"
	storagetypes "go.podman.io/storage/types"

	"fmt"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// tagRemote puts the manifest of repo:src under more tags, through the
// registry's HTTP API (no image is built per tag).
func tagRemote(t *testing.T, addr, repo, src string, tags ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/"+repo+"/manifests/"+src, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s:%s: HTTP %d", repo, src, res.StatusCode)
	}
	ct := res.Header.Get("Content-Type")
	for _, tag := range tags {
		req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/v2/"+repo+"/manifests/"+tag, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("PUT %s:%s: HTTP %d", repo, tag, res.StatusCode)
		}
	}
}

var tagsListReq = regexp.MustCompile(`"GET /v2/([^ ]+)/tags/list[^ ]* HTTP`)

// registryTagLists counts tags/list requests per repository in the
// registry's own access log.
func registryTagLists(t *testing.T, r *testenv.Registry) map[string]int {
	t.Helper()
	data, err := os.ReadFile(r.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, m := range tagsListReq.FindAllStringSubmatch(string(data), -1) {
		n[m[1]]++
	}
	return n
}

func newerByRef(rep *Report) map[string]NewerResult {
	m := map[string]NewerResult{}
	for _, r := range rep.Newer {
		m[r.Reference] = r
	}
	return m
}

func newerEventsOf(rep *Report) []report.Event {
	var out []report.Event
	for _, e := range rep.Events {
		if e.Kind == report.EventNewerVersion {
			out = append(out, e)
		}
	}
	return out
}

func TestNewerVersions(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	// The pager paginates the real registry's listing in pages of at most
	// 4 tags with Link headers; the registry itself ignores n.
	pg := testenv.StartTagPager(t, w.reg.Addr, 4, false)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, pg.Addr))

	w.push("app:1.25")
	tagRemote(t, w.reg.Addr, "app", "1.25", "1.24", "1.26", "1.27", "2.0", "1.28-rc1", "1.25.3", "1.25.7", "1.26.2", "latest")
	var filler []string
	for i := 0; i < 20; i++ {
		filler = append(filler, fmt.Sprintf("build-%03d", i))
	}
	tagRemote(t, w.reg.Addr, "app", "1.25", filler...)
	w.push("tool:3.1")
	tagRemote(t, w.reg.Addr, "tool", "3.1", "3.2")
	app := pg.Addr + "/app"
	for _, r := range []string{app + ":1.25", app + ":1.25.3", app + ":latest", pg.Addr + "/tool:3.1", w.reg.Addr + "/tool:3.1"} {
		w.pull(r)
	}
	// Real responses first: the registry sends every tag at once, no Link.
	res, err := http.Get("http://" + w.reg.Addr + "/v2/app/tags/list?n=2")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	regPaginates := res.Header.Get("Link") != ""
	if regPaginates {
		t.Logf("this docker-registry paginates itself: %s", res.Header.Get("Link"))
	}

	p := defaultRefresh()
	p.Newer = policy.NewerMinor
	p.Rules = []policy.RefreshRule{{Match: pg.Addr + "/tool", Mode: policy.RefreshNotify, Newer: policy.NewerOff}}
	before := registryTagLists(t, w.reg)
	rep := w.run(p, nil, false)
	nb := newerByRef(rep)
	want := map[string]string{app + ":1.25": "1.27", app + ":1.25.3": "1.26.2", w.reg.Addr + "/tool:3.1": "3.2"}
	if len(nb) != len(want) {
		t.Errorf("newer results %+v, want %v", rep.Newer, want)
	}
	for ref, tag := range want {
		if r := nb[ref]; r.Newer != tag || !r.New || r.Error != "" || r.Level != policy.NewerMinor {
			t.Errorf("%s: %+v, want newer %s (new)", ref, r, tag)
		}
	}
	if _, ok := nb[pg.Addr+"/tool:3.1"]; ok {
		t.Error("a rule with newer = off was checked")
	}
	// One listing per repository: 30 tags in pages of 4 is 8 pages, each
	// page after the first at the Link the pager sent.
	pages := pg.Pages()
	if len(pages) != 8 || pg.Links() != 7 {
		t.Errorf("pager served %d pages with %d Links, want 8 and 7: %v", len(pages), pg.Links(), pages)
	}
	for i, u := range pages {
		if u.Path != "/v2/app/tags/list" || (i > 0) != strings.Contains(u.RawQuery, "last=") {
			t.Errorf("page %d: %s", i, u.String())
		}
	}
	after := registryTagLists(t, w.reg)
	// The registry saw the pager's 8 and one direct listing of tool.
	if after["app"]-before["app"] != 8 || after["tool"]-before["tool"] != 1 {
		t.Errorf("registry log: tags/list %v → %v", before, after)
	}
	if rep.TagsRequests != 9 || rep.Metrics["tags_requests"] != 9 || rep.Metrics["newer_pending"] != 3 || rep.Metrics["newer_new"] != 3 {
		t.Errorf("tags requests %d, metrics %v", rep.TagsRequests, rep.Metrics)
	}
	evs := newerEventsOf(rep)
	if len(evs) != 3 {
		t.Fatalf("newer events: %+v", evs)
	}
	for _, e := range evs {
		if want[e.Reference] == "" || !strings.HasSuffix(e.Newer, ":"+want[e.Reference]) || e.Topic == "" {
			t.Errorf("event %+v", e)
		}
	}
	if !strings.Contains(rep.Summary, "3 of 3 version tags have a newer version (3 new)") {
		t.Errorf("summary %q", rep.Summary)
	}

	firstSeen := rep.Metrics["newer_oldest_first_seen"]
	if firstSeen == 0 {
		t.Errorf("no newer_oldest_first_seen with newer versions pending: %v", rep.Metrics)
	}

	// Reported once: a second run finds the same, reports nothing new, and
	// the pending versions keep the time they were first reported.
	pg.Reset()
	time.Sleep(1100 * time.Millisecond) // a first-seen time reset would show
	rep = w.run(p, nil, false)
	if evs := newerEventsOf(rep); len(evs) != 0 || rep.Metrics["newer_pending"] != 3 || rep.Metrics["newer_new"] != 0 {
		t.Errorf("second run: events %+v metrics %v", evs, rep.Metrics)
	}
	if got := rep.Metrics["newer_oldest_first_seen"]; got != firstSeen {
		t.Errorf("second run: newer_oldest_first_seen %v, want the first run's %v", got, firstSeen)
	}
	recs, err := History(w.db, app+":1.25")
	if err != nil || len(recs) != 1 || len(recs[0].Newer) != 1 || recs[0].Newer[0].Tag != "1.27" {
		t.Errorf("history: %+v, %v", recs, err)
	}

	// A newer minor appears: only that is new. A pre-release never is.
	w.push("app:1.28") // its own image
	tagRemote(t, w.reg.Addr, "app", "1.25", "1.29-beta", "2.1")
	rep = w.run(p, nil, false)
	evs = newerEventsOf(rep)
	if len(evs) != 1 || evs[0].Reference != app+":1.25" || evs[0].Newer != app+":1.28" {
		t.Errorf("after pushing 1.28: %+v", evs)
	}
	// major for one repository through a rule.
	pm := p
	pm.Rules = append([]policy.RefreshRule{{Match: app, Mode: policy.RefreshNotify, Newer: policy.NewerMajor}}, p.Rules...)
	rep = w.run(pm, nil, true)
	if r := newerByRef(rep)[app+":1.25"]; r.Newer != "2.1" || !r.New {
		t.Errorf("major via rule (dry run): %+v", r)
	}
	// The dry run recorded nothing: the same result is new again.
	rep = w.run(pm, nil, true)
	if r := newerByRef(rep)[app+":1.25"]; !r.New {
		t.Errorf("dry run recorded %+v", r)
	}

	// The real registry with a page size it ignores (2.8 sends every tag
	// and no Link): a full page of 2 makes the client ask for last=3.2,
	// the registry sends the same 2 tags again, and the listing stops there.
	before = registryTagLists(t, w.reg)
	rep = w.runWith(p, Options{tagsPage: 2})
	if r := newerByRef(rep)[w.reg.Addr+"/tool:3.1"]; r.Newer != "3.2" || r.Error != "" {
		t.Errorf("tool with pages of 2: %+v", r)
	}
	want2 := 2 // ignored n: a full page, then last= and the same page again
	if regPaginates {
		want2 = 1
	}
	if n := registryTagLists(t, w.reg)["tool"] - before["tool"]; n != want2 {
		t.Errorf("tool with pages of 2: %d tags/list requests, want %d", n, want2)
	}

	// pull_newer: the rule's references get their newer version pulled
	// beside the old tag, which stays where it was. Report-only rules and
	// pull-mode rules without pull_newer pull nothing.
	id125 := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", app+":1.25")
	pp := p
	pp.Rules = []policy.RefreshRule{{Match: app, Mode: policy.RefreshPull}}
	rep = w.run(pp, nil, false)
	if r := newerByRef(rep)[app+":1.25"]; r.Newer != "1.28" || r.PulledImageID != "" {
		t.Errorf("pull mode without pull_newer: %+v", r)
	}
	if _, err := testenv.RunErr(w.host.Env, "podman", append(w.host.Flags(), "image", "exists", app+":1.28")...); err == nil {
		t.Error("pull mode without pull_newer pulled a newer version")
	}
	pp.Rules[0].PullNewer = true
	rep = w.run(pp, nil, true) // a dry run pulls nothing
	if r := newerByRef(rep)[app+":1.25"]; r.PulledImageID != "" {
		t.Errorf("dry run pulled: %+v", r)
	}
	rep = w.run(pp, nil, false)
	r := newerByRef(rep)[app+":1.25"]
	if r.Newer != "1.28" || r.PulledImageID == "" || r.PulledImageID == id125 || r.Error != "" {
		t.Fatalf("pull_newer: %+v", r)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", app+":1.28"); got != r.PulledImageID {
		t.Errorf("%s:1.28 is %s, want the pulled %s", app, got, r.PulledImageID)
	}
	if got := w.host.Run(t, "image", "inspect", "--format", "{{.Id}}", app+":1.25"); got != id125 {
		t.Errorf("the old tag moved: %s, was %s", got, id125)
	}
	pulledEv := false
	for _, e := range rep.Events {
		pulledEv = pulledEv || e.Kind == report.EventImagePulled && e.Reference == app+":1.28"
	}
	if !pulledEv || rep.Metrics["newer_pulled"] < 1 {
		t.Errorf("pull_newer events %+v metrics %v", rep.Events, rep.Metrics)
	}
	// Held locally now: not pulled again.
	rep = w.run(pp, nil, false)
	if rep.Metrics["newer_pulled"] != 0 {
		t.Errorf("pulled again: %v", rep.Metrics)
	}

	// No Link: the client falls back to last= with full pages.
	nl := testenv.StartTagPager(t, w.reg.Addr, 0, true)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", nl.Addr))
	w.pull(nl.Addr + "/app:1.25")
	p2 := defaultRefresh()
	p2.Newer = policy.NewerMinor
	p2.NewerExclude = []string{"build-*"}
	rep = w.runWith(p2, Options{tagsPage: 10})
	if r := newerByRef(rep)[nl.Addr+"/app:1.25"]; r.Newer != "1.28" {
		t.Errorf("without Link: %+v", r)
	}
	// 33 tags in pages of 10: 4 pages, the last one short.
	if got := len(nl.Pages()); got != 4 || nl.Links() != 0 {
		t.Errorf("without Link: %d pages (%v), %d links", got, nl.Pages(), nl.Links())
	}

	// The budget: the digest checks go first; a registry with nothing left
	// gets no listing, and says so.
	nl.Reset()
	cnt := rep.Registries[nl.Addr]
	p2.Budget = cnt.Ping + cnt.Head // what the digest check needs
	rep = w.runWith(p2, Options{tagsPage: 10})
	if r := newerByRef(rep)[nl.Addr+"/app:1.25"]; !strings.Contains(r.Error, "budget") || r.Newer != "" {
		t.Errorf("budget spent by the checks: %+v", r)
	}
	if len(nl.Pages()) != 0 || rep.TagsRequests != 0 {
		t.Errorf("listed past the budget: %v", nl.Pages())
	}

	// Room for one listing a run, two repositories: the one listed least
	// recently goes first (tool never was), so the two take turns.
	w.pull(nl.Addr + "/tool:3.1")
	p2.Budget = cnt.Ping + 2 + 1 // the pings, two HEADs, one listing
	order := []string{"/tool:3.1", "/app:1.25", "/tool:3.1"}
	for i, want := range order {
		rep = w.runWith(p2, Options{})
		nb := newerByRef(rep)
		other := order[(i+1)%2]
		if r := nb[nl.Addr+want]; r.Error != "" || r.Newer == "" {
			t.Errorf("run %d: %s not listed: %+v", i, want, r)
		}
		if r := nb[nl.Addr+other]; !strings.Contains(r.Error, "budget") {
			t.Errorf("run %d: %s listed too: %+v", i, other, r)
		}
	}
}

// runWith runs the job like world.run, with the unexported test knobs of o.
func (w *world) runWith(p policy.Refresh, o Options) *Report {
	w.t.Helper()
	sys := &types.SystemContext{SystemRegistriesConfPath: w.regConf, AuthFilePath: filepath.Join(w.t.TempDir(), "auth.json")}
	st, err := storeopen.Open(storagetypes.StoreOptions{GraphRoot: w.host.Root, RunRoot: w.host.RunRoot, GraphDriverName: w.host.Driver})
	if err != nil {
		w.t.Fatal(err)
	}
	defer storeopen.Close(st)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o.Policy, o.Sys = p, sys
	rep, err := Run(ctx, quiet(), st, w.db, o)
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

// The tag listing uses the token of the repository's pull scope that the
// digest checks fetched: no second token.
func TestNewerBearerToken(t *testing.T) {
	testenv.RequireRoot(t)
	ts := testenv.StartTokenServer(t, "stwg-newer", "tok3n")
	w := newWorldWith(t, testenv.StartTokenRegistry(t, ts))
	creds := []string{"--creds", "stwg-newer:tok3n"}
	ref := w.reg.Addr + "/one/app:1.0"
	w.pushTo(ref, creds...)
	w.pushTo(w.reg.Addr+"/one/app:1.1", creds...)
	w.pull(ref, creds...)
	good := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-newer", "tok3n"}})
	p := defaultRefresh()
	p.Newer = policy.NewerMinor
	before := len(ts.Scopes())
	rep := w.run(p, &types.SystemContext{AuthFilePath: good}, false)
	if r := newerByRef(rep)[ref]; r.Newer != "1.1" || r.Error != "" {
		t.Errorf("newer under bearer auth: %+v", rep.Newer)
	}
	if c := rep.Registries[w.reg.Addr]; c.Token != 1 || c.Head != 1 || c.Tags != 1 || len(ts.Scopes())-before != 1 {
		t.Errorf("counters %+v, tokens issued %d", c, len(ts.Scopes())-before)
	}
	bad := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-newer", "nope"}})
	rep = w.run(p, &types.SystemContext{AuthFilePath: bad}, false)
	if r := newerByRef(rep)[ref]; r.Newer != "" || !strings.Contains(r.Error, "not authorized") {
		t.Errorf("newer with bad credentials: %+v", rep.Newer)
	}
}
