package prune_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/test/testenv"
)

// env is one real podman store plus stowage's state, policy and Quadlet dir.
type env struct {
	p       *testenv.Podman
	state   string
	policy  string
	quadlet string
}

func newEnv(t *testing.T, driver string) *env {
	t.Helper()
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, driver)
	e := &env{p: p, state: filepath.Join(p.Dir(), "state"), policy: filepath.Join(p.Dir(), "stowage.toml"), quadlet: filepath.Join(p.Dir(), "quadlet")}
	if err := os.MkdirAll(e.quadlet, 0o755); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) writePolicy(t *testing.T, prune string) {
	t.Helper()
	// min_free is off unless a test sets it: this machine's disk is shared.
	body := "version = 1\n[prune]\nmin_free = \"0\"\n" + prune + "\n"
	if err := os.WriteFile(e.policy, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *env) stowageArgs(args ...string) []string {
	return append([]string{"--state-dir", e.state, "--policy", e.policy}, args...)
}

// prune runs `stowage run prune --format json` and decodes the report.
func (e *env) prune(t *testing.T, extra ...string) *prune.Report {
	t.Helper()
	args := e.stowageArgs(append([]string{"run", "prune", "--format", "json", "--quadlet-dir", e.quadlet}, extra...)...)
	out := e.p.Stowage(t, args...)
	var r prune.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	return &r
}

func (e *env) images(t *testing.T) map[string]string {
	t.Helper()
	out := e.p.Run(t, "images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			m[strings.TrimPrefix(f[0], "sha256:")] += f[1] + " "
		}
	}
	return m
}

func imp(t *testing.T, p *testenv.Podman, ref, content string) string {
	t.Helper()
	// Top-level files only: a path under a directory without its own tar
	// entry makes storage's Check report the implicit directory.
	return p.Import(t, ref, map[string]string{"/" + strings.NewReplacer("/", "_", ":", "_").Replace(ref): strings.Repeat(content, 4096)})
}

func byID(items []prune.Item) map[string]prune.Item {
	m := map[string]prune.Item{}
	for _, it := range items {
		m[it.ID] = it
	}
	return m
}

// checkStore opens the store directly and runs containers/storage's own
// consistency check, then makes sure podman can still list and create.
func checkStore(t *testing.T, p *testenv.Podman) {
	t.Helper()
	st, err := storage.GetStore(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := st.Check(storage.CheckEverything())
	_, _ = st.Shutdown(false)
	if err != nil {
		t.Fatalf("store check: %v", err)
	}
	if len(rep.Layers) > 0 || len(rep.ROLayers) > 0 || len(rep.Images) > 0 || len(rep.Containers) > 0 {
		t.Fatalf("store inconsistent: %+v", rep)
	}
	p.Run(t, "images")
}

// TestRules builds one store with an image for every rule and checks, in a
// single real run, that each goes or stays for the right reason.
func TestRules(t *testing.T) {
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) { testRules(t, driver) })
	}
}

func testRules(t *testing.T, driver string) {
	e := newEnv(t, driver)
	p := e.p
	ids := map[string]string{}
	for _, ref := range []string{"localhost/app:1", "localhost/inuse:1", "localhost/app:pinned", "localhost/kept:1", "localhost/ql:1", "localhost/old:1", "localhost/dangling:1", "localhost/app:2"} {
		ids[ref] = imp(t, p, ref, ref)
	}
	p.Run(t, "untag", ids["localhost/dangling:1"])
	p.Run(t, "create", "--name", "c-inuse", "localhost/inuse:1", "/bin/true")
	e.p.Stowage(t, e.stowageArgs("pin", "localhost/app:pinned")...)
	if err := os.WriteFile(filepath.Join(e.quadlet, "ql.container"), []byte("[Container]\nImage=localhost/ql:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An orphan layer: what an interrupted pull leaves behind.
	st, err := storage.GetStore(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := st.CreateLayer("", "", nil, "", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = st.Shutdown(false)

	time.Sleep(1100 * time.Millisecond)
	split := time.Now()
	ids["localhost/young:1"] = imp(t, p, "localhost/young:1", "young")
	// Ages are evaluated one hour minus a moment after split: everything
	// imported before is older than min_age = 1h, young:1 is not.
	now := split.Add(time.Hour - 500*time.Millisecond).UTC().Format(time.RFC3339Nano)
	e.writePolicy(t, `min_age = "1h"
unused_for = "30m"
keep = ["localhost/kept"]
keep_last = 1`)

	dry := e.prune(t, "--dry-run", "--now", now)
	if !dry.DryRun || dry.FreedBytes != 0 || dry.PlannedFreeBytes <= 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	if got := len(e.images(t)); got != 9 {
		t.Fatalf("dry run removed something: %d images left", got)
	}

	r := e.prune(t, "--now", now)
	removed, kept := byID(r.Removed), byID(r.Kept)
	wantRemoved := map[string]prune.Reason{
		ids["localhost/dangling:1"]: prune.ReasonDangling,
		ids["localhost/app:1"]:      prune.ReasonUnusedFor,
		orphan.ID:                   prune.ReasonOrphan,
	}
	wantKept := map[string]prune.Reason{
		ids["localhost/inuse:1"]:    prune.KeptInUse,
		ids["localhost/app:pinned"]: prune.KeptPinned,
		ids["localhost/kept:1"]:     prune.KeptKeep,
		ids["localhost/ql:1"]:       prune.KeptQuadlet,
		ids["localhost/app:2"]:      prune.KeptKeepLast,
		ids["localhost/old:1"]:      prune.KeptKeepLast, // alone in its repository
		ids["localhost/young:1"]:    prune.KeptMinAge,
	}
	for id, why := range wantRemoved {
		if removed[id].Reason != why {
			t.Errorf("%.12s: removed with %q, want %q (kept: %+v)", id, removed[id].Reason, why, kept[id])
		}
	}
	for id, why := range wantKept {
		if kept[id].Reason != why {
			t.Errorf("%.12s: kept with %q, want %q", id, kept[id].Reason, why)
		}
	}
	if len(r.Removed) != len(wantRemoved) {
		t.Errorf("removed %d items, want %d: %+v", len(r.Removed), len(wantRemoved), r.Removed)
	}
	if r.FreedBytes != dry.PlannedFreeBytes || r.FreedBytes != r.PlannedFreeBytes {
		t.Errorf("freed %d, planned %d (dry run %d)", r.FreedBytes, r.PlannedFreeBytes, dry.PlannedFreeBytes)
	}
	// Up to the records' shares of layers.json and images.json, which
	// shrink by whole blocks.
	if d := r.UsageBeforeBytes - r.UsageAfterBytes - r.FreedBytes; d > 16<<10 || d < -16<<10 {
		t.Errorf("usage %d → %d does not match freed %d", r.UsageBeforeBytes, r.UsageAfterBytes, r.FreedBytes)
	}
	var evRemoved int
	for _, ev := range r.Events {
		if ev.Kind == "image_removed" {
			evRemoved++
		}
	}
	if evRemoved != 2 || r.Metrics["freed_bytes"] != float64(r.FreedBytes) {
		t.Errorf("events/metrics: %d image_removed, metrics %v", evRemoved, r.Metrics)
	}
	left := e.images(t)
	for id := range wantRemoved {
		if _, ok := left[id]; ok {
			t.Errorf("%.12s still listed by podman", id)
		}
	}
	for id := range wantKept {
		if _, ok := left[id]; !ok {
			t.Errorf("kept image %.12s is gone", id)
		}
	}
	checkStore(t, p)
	p.Run(t, "create", "localhost/app:2", "/bin/true")

	// Unpinning makes the image eligible on the next run.
	e.p.Stowage(t, e.stowageArgs("unpin", "localhost/app:pinned")...)
	r = e.prune(t, "--now", now)
	if byID(r.Removed)[ids["localhost/app:pinned"]].Reason != prune.ReasonUnusedFor {
		t.Errorf("unpinned image not removed: %+v", r.Removed)
	}
}

// TestPressureLRU fills a store over its quota and checks that pruning frees
// the least recently used images down to the low watermark, where podman's
// create events (read through its REST API) count as use.
func TestPressureLRU(t *testing.T) {
	e := newEnv(t, "vfs")
	p := e.p
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, imp(t, p, fmt.Sprintf("localhost/lru%d:1", i), fmt.Sprint(i)))
		time.Sleep(20 * time.Millisecond) // distinct pull times, oldest first
	}
	svc := p.StartPodmanService(t)
	// lru0 is the oldest pull, but used recently: a container created and
	// removed again (what `podman run --rm` leaves) only shows in the events.
	cid := p.Run(t, "create", "localhost/lru0:1", "/bin/true")
	p.Run(t, "rm", cid)

	e.writePolicy(t, `min_age = "0"
keep_last = 0`)
	base := e.prune(t, "--dry-run", "--podman-socket", svc.Socket)
	usage := base.UsageBeforeBytes
	// Limit so that the high watermark (90%) is exceeded and the low one
	// (80%) needs about one and a half images' worth removed.
	per := usage / 5
	limit := usage * 100 / 115
	e.writePolicy(t, fmt.Sprintf(`min_age = "0"
keep_last = 0
quota = "%d"`, limit))
	r := e.prune(t, "--podman-socket", svc.Socket)
	var got []string
	for _, it := range r.Removed {
		if it.Reason != prune.ReasonQuota {
			t.Errorf("unexpected removal %+v", it)
		}
		got = append(got, it.ID)
	}
	if !slices.Equal(got, []string{ids[1], ids[2]}) {
		t.Fatalf("removed %v, want lru1, lru2 (per image %d, need %d): %+v", got, per, r.NeedBytes, r.Removed)
	}
	low := limit * 80 / 100
	if r.UsageAfterBytes > low {
		t.Errorf("usage after %d above low watermark %d", r.UsageAfterBytes, low)
	}
	if r.LimitBytes != limit || r.Pressure != "limit" {
		t.Errorf("limit %d pressure %q", r.LimitBytes, r.Pressure)
	}
	var quotaEv bool
	for _, ev := range r.Events {
		quotaEv = quotaEv || ev.Kind == "quota_exceeded" && ev.Bytes == r.NeedBytes
	}
	if !quotaEv {
		t.Errorf("no quota_exceeded event: %+v", r.Events)
	}
	// Freed what pressure asked for: no shortfall.
	if m := r.Metrics; m["pressure_need_bytes"] != float64(r.NeedBytes) || r.NeedBytes <= 0 || m["shortfall_bytes"] != 0 || m["limit_bytes"] != float64(limit) {
		t.Errorf("metrics under satisfied pressure: %v", m)
	}

	// Under pressure that cannot be met (a container uses lru3): the
	// shortfall is what was needed and not freed.
	p.Run(t, "create", "localhost/lru3:1", "/bin/true")
	e.writePolicy(t, `min_age = "0"
keep_last = 0
quota = "1KiB"`)
	r = e.prune(t, "--podman-socket", svc.Socket)
	want := r.NeedBytes - r.FreedBytes
	if want <= 0 || r.Metrics["shortfall_bytes"] != float64(want) || r.UsageAfterBytes <= 1024 {
		t.Errorf("unmet pressure: need %d freed %d, metrics %v", r.NeedBytes, r.FreedBytes, r.Metrics)
	}
	checkStore(t, p)
}
