package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

const img = "localhost/stwg-volumes/img:1"

// env is a temp store with one image and a real podman API service over it.
type env struct {
	p   *testenv.Podman
	svc *testenv.PodmanService
	c   *podmanapi.Client
}

// newStore is a temp store with one image and no API service.
func newStore(t *testing.T) *env {
	t.Helper()
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.IsolateEngine(t)
	p.Import(t, img, map[string]string{"/hello": "hi"})
	return &env{p: p}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := newStore(t)
	p := e.p
	svc := p.StartPodmanService(t)
	c := podmanapi.New(svc.Socket, 30*time.Second)
	t.Cleanup(c.Close)
	return &env{p: p, svc: svc, c: c}
}

// anonDangling makes an anonymous volume (podman create -v /data) whose
// container is gone, writes size bytes into it and returns its name.
func (e *env) anonDangling(t *testing.T, size int) string {
	t.Helper()
	ctr := "tmp-" + randSuffix()
	name := e.anonUsed(t, ctr)
	e.p.Run(t, "rm", ctr) // without -v: the volume stays
	e.fill(t, name, size)
	return name
}

func randSuffix() string { return strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "") }

// anonUsed makes an anonymous volume used by the created container ctr.
func (e *env) anonUsed(t *testing.T, ctr string) string {
	t.Helper()
	e.p.Run(t, "create", "--name", ctr, "-v", "/data", img, "/hello")
	return e.p.Run(t, "inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", ctr)
}

// fill writes size bytes into the volume.
func (e *env) fill(t *testing.T, name string, size int) {
	t.Helper()
	mp := e.p.Run(t, "volume", "inspect", "--format", "{{.Mountpoint}}", name)
	if err := os.WriteFile(filepath.Join(mp, "blob"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
}

// volumes lists the store's volume names with the podman CLI.
func (e *env) volumes(t *testing.T) []string {
	t.Helper()
	out := e.p.Run(t, "volume", "ls", "-q")
	if out == "" {
		return nil
	}
	names := strings.Split(out, "\n")
	slices.Sort(names)
	return names
}

func names(items []Item) []string {
	var n []string
	for _, it := range items {
		n = append(n, it.Name)
	}
	slices.Sort(n)
	return n
}

func reasons(items []Item) map[string]string {
	m := map[string]string{}
	for _, it := range items {
		m[it.Name] = it.Reason
	}
	return m
}

func TestRunAppliesEveryRule(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	anon := e.anonDangling(t, 150_000)
	anonUsed := e.anonUsed(t, "holder") // created, never started: still a user
	e.p.Run(t, "volume", "create", "plain")
	e.p.Run(t, "volume", "create", "scratch-1")
	e.fill(t, "scratch-1", 50_000)
	e.p.Run(t, "volume", "create", "--label", "io.stowage.keep=1", "scratch-labelled")
	e.p.Run(t, "volume", "create", "scratch-pinned")
	e.p.Run(t, "create", "--name", "db", "-v", "scratch-db:/data", img, "/hello")
	before := e.volumes(t)

	p := policy.Volumes{
		AnonymousOnly: true,
		MinAge:        dur(1000 * time.Hour), // everything here is too new
		KeepLabels:    []string{"io.stowage.keep"},
		Include:       []string{"scratch-*"},
		Keep:          []string{"*-pinned"},
	}
	r, err := Run(ctx, e.c, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 0 || !slices.Equal(e.volumes(t), before) {
		t.Fatalf("min_age 1000h removed %v; volumes now %v", names(r.Removed), e.volumes(t))
	}
	if got := reasons(r.Kept); got[anon] != ReasonTooNew || got["scratch-1"] != ReasonTooNew {
		t.Errorf("kept reasons with min_age 1000h = %v, want too_new for %s and scratch-1", got, anon)
	}

	p.MinAge = dur(0)
	r, err = Run(ctx, e.c, p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{anon, "scratch-1"}; !slices.Equal(names(r.Removed), sorted(want)) {
		t.Errorf("removed %v, want %v", names(r.Removed), sorted(want))
	}
	want := map[string]string{
		anonUsed:           ReasonInUse,
		"plain":            ReasonNamed,
		"scratch-labelled": ReasonKeepLabel,
		"scratch-pinned":   ReasonKeepGlob,
		"scratch-db":       ReasonInUse,
	}
	if got := reasons(r.Kept); !mapsEqual(got, want) {
		t.Errorf("kept = %v, want %v", got, want)
	}
	left := e.volumes(t)
	if slices.Contains(left, anon) || slices.Contains(left, "scratch-1") || len(left) != len(before)-2 {
		t.Errorf("podman volume ls after run = %v (before %v)", left, before)
	}

	// Report contents: sizes from system df, events, metrics, version.
	rem := map[string]Item{}
	for _, it := range r.Removed {
		rem[it.Name] = it
	}
	if rem[anon].Bytes < 150_000 || rem["scratch-1"].Bytes < 50_000 || rem[anon].Reason != ReasonAnonymous || rem["scratch-1"].Reason != ReasonIncluded {
		t.Errorf("removed items = %+v", r.Removed)
	}
	if time.Since(rem[anon].Created) > time.Hour || !rem[anon].Anonymous {
		t.Errorf("removed %s: created %v anonymous %v", anon, rem[anon].Created, rem[anon].Anonymous)
	}
	if r.FreedBytes != rem[anon].Bytes+rem["scratch-1"].Bytes || r.Metrics["freed_bytes"] != float64(r.FreedBytes) ||
		r.Metrics["removed"] != 2 || r.Metrics["kept"] != float64(len(r.Kept)) {
		t.Errorf("freed %d, metrics %v", r.FreedBytes, r.Metrics)
	}
	if len(r.Events) != 2 {
		t.Fatalf("events = %+v, want 2 volume_removed", r.Events)
	}
	for _, ev := range r.Events {
		if ev.Kind != report.EventVolumeRemoved || rem[ev.Volume].Bytes != ev.Bytes || ev.Message == "" {
			t.Errorf("event %+v", ev)
		}
	}
	wantVersion := e.p.Run(t, "version", "--format", "{{.Server.Version}}")
	if r.Job != report.JobVolumes || r.PodmanVersion != wantVersion || r.Summary == "" || r.Finished.Before(r.Started) {
		t.Errorf("common: job %q version %q (want %q) summary %q", r.Job, r.PodmanVersion, wantVersion, r.Summary)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRunNamedOptIn(t *testing.T) {
	e := newEnv(t)
	e.p.Run(t, "volume", "create", "named")
	e.p.Run(t, "create", "--name", "user", "-v", "busy:/data", img, "/hello")
	anon := e.anonDangling(t, 10)

	r, err := Run(context.Background(), e.c, policy.Volumes{AnonymousOnly: false}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(r.Removed), sorted([]string{anon, "named"}); !slices.Equal(got, want) {
		t.Errorf("anonymous_only=false removed %v, want %v", got, want)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{"busy"}) {
		t.Errorf("volumes left %v, want [busy]", got)
	}
}

func TestDryRunRemovesNothing(t *testing.T) {
	e := newEnv(t)
	anon := e.anonDangling(t, 1000)
	before := e.volumes(t)
	r, err := Run(context.Background(), e.c, policy.Volumes{AnonymousOnly: true}, Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.DryRun || !slices.Equal(names(r.Removed), []string{anon}) || len(r.Events) != 0 {
		t.Errorf("dry run: removed %v events %v", names(r.Removed), r.Events)
	}
	if got := e.volumes(t); !slices.Equal(got, before) {
		t.Errorf("dry run changed volumes: %v → %v", before, got)
	}
}

// TestRaceTakesVolume creates a container using a planned volume
// between planning and applying: the executor's own listing no longer shows
// it dangling and the volume is kept (TestDeleteRefusedWhenTakenAfterListing
// covers a container taking it after that listing: podman's 409).
func TestRaceTakesVolume(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	taken := e.anonDangling(t, 100)
	free := e.anonDangling(t, 100)
	p := policy.Volumes{AnonymousOnly: true}
	snap, err := TakeSnapshot(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	pl := MakePlan(snap, p, time.Now())
	if !slices.Equal(names(pl.Remove), sorted([]string{taken, free})) {
		t.Fatalf("plan removes %v, want both", names(pl.Remove))
	}
	e.p.Run(t, "create", "--name", "late", "-v", taken+":/data", img, "/hello")

	r := &Report{}
	if err := apply(ctx, e.c, p, pl.Remove, r, Options{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(r.Removed), []string{free}) {
		t.Errorf("removed %v, want only %s", names(r.Removed), free)
	}
	if got := reasons(r.Kept); got[taken] != ReasonBecameUsed {
		t.Errorf("kept %v, want %s became_used", got, taken)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{taken}) {
		t.Errorf("volumes left %v, want [%s]", got, taken)
	}
}

// TestApplyRechecksPolicy relabels a planned volume before applying: the
// fresh inspection keeps it.
func TestApplyRechecksPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.p.Run(t, "volume", "create", "scratch")
	p := policy.Volumes{AnonymousOnly: false, KeepLabels: []string{"hold"}}
	snap, err := TakeSnapshot(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	pl := MakePlan(snap, p, time.Now())
	// Recreate it under the same name, now labelled.
	e.p.Run(t, "volume", "rm", "scratch")
	e.p.Run(t, "volume", "create", "--label", "hold", "scratch")
	r := &Report{}
	if err := apply(ctx, e.c, p, pl.Remove, r, Options{}); err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 0 || reasons(r.Kept)["scratch"] != ReasonChanged {
		t.Errorf("removed %v kept %+v, want scratch kept as changed", names(r.Removed), r.Kept)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{"scratch"}) {
		t.Errorf("volumes left %v", got)
	}
}

// TestPodmanGone stops the real service: the run fails with a
// clear error and every volume is still there.
func TestPodmanGone(t *testing.T) {
	e := newEnv(t)
	e.anonDangling(t, 100)
	before := e.volumes(t)
	e.svc.Stop()
	r, err := Run(context.Background(), e.c, policy.Volumes{AnonymousOnly: true}, Options{})
	if err == nil || !strings.Contains(err.Error(), e.svc.Socket) {
		t.Fatalf("Run with podman gone = %v, want an error naming the socket", err)
	}
	if len(r.Removed) != 0 || !strings.Contains(r.Summary, "failed") {
		t.Errorf("report %+v", r)
	}
	if got := e.volumes(t); !slices.Equal(got, before) {
		t.Errorf("volumes changed: %v → %v", before, got)
	}
}

// faultyPodman serves podman's answers from a real service but fails system
// df with HTTP 500, a fault a healthy podman does not produce on demand.
type faultyPodman struct {
	hang    time.Duration // answer system df after this long instead of failing
	mu      sync.Mutex
	deletes int
}

func (f *faultyPodman) start(t *testing.T, real string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "faulty.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	proxy := podmanapi.New(real, 10*time.Second)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete:
			f.mu.Lock()
			f.deletes++
			f.mu.Unlock()
			w.WriteHeader(http.StatusNoContent)
		case strings.HasSuffix(r.URL.Path, "/system/df") && f.hang > 0:
			select {
			case <-time.After(f.hang):
			case <-r.Context().Done():
			}
			writeJSONResp(w, podmanapi.SystemDF{})
		case strings.HasSuffix(r.URL.Path, "/system/df"):
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"cause":"boom","message":"disk usage walk failed","response":500}`))
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			v, _ := proxy.Ping(r.Context())
			w.Header().Set("Libpod-Api-Version", v)
			_, _ = w.Write([]byte("OK"))
		default:
			vs, _ := proxy.Volumes(r.Context(), nil)
			writeJSONResp(w, vs)
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sock
}

func writeJSONResp(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func TestAPIError(t *testing.T) {
	e := newEnv(t)
	e.anonDangling(t, 100)
	f := &faultyPodman{}
	c := podmanapi.New(f.start(t, e.svc.Socket), 10*time.Second)
	defer c.Close()
	r, err := Run(context.Background(), c, policy.Volumes{AnonymousOnly: true}, Options{})
	var apiErr *podmanapi.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 500 || !strings.Contains(err.Error(), "disk usage walk failed") {
		t.Fatalf("Run = %v, want the API's 500 with its message", err)
	}
	if len(r.Removed) != 0 || f.deletes != 0 {
		t.Errorf("removed %v, %d DELETEs sent; want none", r.Removed, f.deletes)
	}
}

func TestAPITimeout(t *testing.T) {
	e := newEnv(t)
	e.anonDangling(t, 100)
	f := &faultyPodman{hang: 20 * time.Second}
	c := podmanapi.New(f.start(t, e.svc.Socket), 500*time.Millisecond)
	defer c.Close()
	r, err := Run(context.Background(), c, policy.Volumes{AnonymousOnly: true}, Options{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want a timeout", err)
	}
	if len(r.Removed) != 0 || f.deletes != 0 {
		t.Errorf("removed %v, %d DELETEs sent; want none", r.Removed, f.deletes)
	}
}

func TestUsage(t *testing.T) {
	e := newEnv(t)
	anon := e.anonDangling(t, 120_000)
	e.anonUsed(t, "holder")
	e.p.Run(t, "volume", "create", "named")
	e.fill(t, "named", 30_000)
	d, err := Usage(context.Background(), e.c, policy.Volumes{AnonymousOnly: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d.Count != 3 || d.DanglingCount != 2 {
		t.Errorf("Usage = %+v, want 3 volumes, 2 dangling", d)
	}
	if d.Bytes < 150_000 || d.ReclaimableBytes < 120_000 || d.ReclaimableBytes >= 150_000 {
		t.Errorf("Usage = %+v, want bytes >= 150000 and only %s (>=120000) reclaimable", d, anon)
	}
}

// TestDeleteRefusedWhenTakenAfterListing lets a container take a planned
// volume after the executor's listing, just before its DELETE reaches the
// real podman: podman refuses (409) and the volume is kept as became_used.
func TestDeleteRefusedWhenTakenAfterListing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	taken := e.anonDangling(t, 100)
	free := e.anonDangling(t, 100)
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "d" },
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.svc.Socket)
		}},
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/"+taken) {
			once.Do(func() { e.p.Run(t, "create", "--name", "late", "-v", taken+":/data", img, "/hello") })
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	c := podmanapi.New(sock, 30*time.Second)
	defer c.Close()

	r, err := Run(ctx, c, policy.Volumes{AnonymousOnly: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(r.Removed), []string{free}) {
		t.Errorf("removed %v, want only %s", names(r.Removed), free)
	}
	if got := r.Kept; len(got) != 1 || got[0].Name != taken || got[0].Reason != ReasonBecameUsed || !strings.Contains(got[0].Detail, "podman refused") {
		t.Errorf("kept %+v, want %s became_used by podman's refusal", got, taken)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{taken}) {
		t.Errorf("volumes left %v, want [%s]", got, taken)
	}
}

// TestStaleListingIsRefreshed hands the executor a listing older than
// relistAfter that still shows a planned anonymous volume as dangling, though
// a container took it since: the executor lists again and keeps it without
// sending a DELETE (no "podman refused" in the detail).
func TestStaleListingIsRefreshed(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	taken := e.anonDangling(t, 100)
	p := policy.Volumes{AnonymousOnly: true}
	snap, err := TakeSnapshot(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	pl := MakePlan(snap, p, time.Now())
	if len(pl.Remove) != 1 {
		t.Fatalf("plan removes %v, want %s", names(pl.Remove), taken)
	}
	e.p.Run(t, "create", "--name", "late", "-v", taken+":/data", img, "/hello")
	stale := snap.listing
	stale.at = time.Now().Add(-relistAfter - time.Second)
	r := &Report{}
	if err := applyListed(ctx, e.c, p, pl.Remove, r, Options{}, stale); err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 0 || len(r.Kept) != 1 || r.Kept[0].Reason != ReasonBecameUsed || strings.Contains(r.Kept[0].Detail, "refused") {
		t.Errorf("removed %v kept %+v, want %s kept as became_used by the fresh listing", names(r.Removed), r.Kept, taken)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{taken}) {
		t.Errorf("volumes left %v", got)
	}
}

// TestNamedInspectedBeforeDelete recreates a planned named volume with a
// keep label after the executor's (fresh) listing: the inspection right
// before its DELETE keeps it.
func TestNamedInspectedBeforeDelete(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.p.Run(t, "volume", "create", "scratch")
	p := policy.Volumes{KeepLabels: []string{"hold"}}
	snap, err := TakeSnapshot(ctx, e.c)
	if err != nil {
		t.Fatal(err)
	}
	pl := MakePlan(snap, p, time.Now())
	if len(pl.Remove) != 1 {
		t.Fatalf("plan removes %v, want scratch", names(pl.Remove))
	}
	e.p.Run(t, "volume", "rm", "scratch")
	e.p.Run(t, "volume", "create", "--label", "hold", "scratch")
	fresh := snap.listing
	fresh.at = time.Now() // still describes the old scratch, as if just listed
	r := &Report{}
	if err := applyListed(ctx, e.c, p, pl.Remove, r, Options{}, fresh); err != nil {
		t.Fatal(err)
	}
	if len(r.Removed) != 0 || reasons(r.Kept)["scratch"] != ReasonChanged {
		t.Errorf("removed %v kept %+v, want scratch kept as changed", names(r.Removed), r.Kept)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{"scratch"}) {
		t.Errorf("volumes left %v", got)
	}
}
