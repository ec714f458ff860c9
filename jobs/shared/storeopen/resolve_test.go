package storeopen

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/test/testenv"
)

// podmanStore runs `podman [flags] info` itself and returns its .store.
func podmanStore(t *testing.T, flags ...string) PodmanStore {
	t.Helper()
	out := testenv.Run(t, nil, "podman", append(flags, "info", "--format", "json")...)
	info, err := ParsePodmanInfo([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return info.Store
}

func writeConf(t *testing.T, path, graphRoot, runRoot, driver string) {
	t.Helper()
	body := "[storage]\ndriver = \"" + driver + "\"\ngraphroot = \"" + graphRoot + "\"\nrunroot = \"" + runRoot + "\"\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResolveAsksPodman: as root, with a temp CONTAINERS_STORAGE_CONF, the
// store is what `podman info` says; the answer is cached, the cache is
// invalidated when storage.conf changes, and explicit flags reach podman
// and win.
func TestResolveAsksPodman(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman")
	dir, err := os.MkdirTemp("", "stwg-res-") // short: podman limits runroot length
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	conf := filepath.Join(dir, "storage.conf")
	writeConf(t, conf, dir+"/g", dir+"/r", "vfs")
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	r := Resolver{CacheDir: filepath.Join(dir, "cache"), Timeout: 2 * time.Minute}
	ctx := context.Background()

	res, err := r.Resolve(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := podmanStore(t)
	so := res.Options
	if res.Source != SourcePodman || res.Cached || so.GraphRoot != want.GraphRoot || so.RunRoot != want.RunRoot || so.GraphDriverName != want.GraphDriverName {
		t.Fatalf("resolved %+v\npodman info %+v", res, want)
	}
	if so.GraphRoot != dir+"/g" || so.GraphDriverName != "vfs" || res.ConfigFile != conf || res.PodmanVersion == "" {
		t.Fatalf("resolved %+v", res)
	}

	// Second call: from the cache, same answer.
	again, err := r.Resolve(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Options.GraphRoot != so.GraphRoot || again.Options.RunRoot != so.RunRoot {
		t.Fatalf("second resolve %+v", again)
	}

	// storage.conf changes: the cache is stale and not used.
	writeConf(t, conf, dir+"/g2", dir+"/r2", "vfs")
	changed, err := r.Resolve(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if changed.Cached || changed.Options.GraphRoot != dir+"/g2" || changed.Options.RunRoot != dir+"/r2" {
		t.Fatalf("after editing storage.conf: %+v", changed)
	}
	if got := podmanStore(t); got.GraphRoot != changed.Options.GraphRoot {
		t.Fatalf("podman says %s", got.GraphRoot)
	}

	// A file written the same second with the same size, atomically
	// replaced (an editor's save), is still noticed.
	tmp := conf + ".new"
	writeConf(t, tmp, dir+"/g3", dir+"/r3", "vfs")
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	changed, err = r.Resolve(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if changed.Cached || changed.Options.GraphRoot != dir+"/g3" {
		t.Fatalf("after replacing storage.conf: %+v", changed)
	}

	// Explicit flags are passed to podman (it creates the store it was
	// pointed at) and win.
	o := Options{GraphRoot: dir + "/x", RunRoot: dir + "/xr", Driver: "vfs"}
	flagged, err := r.Resolve(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if flagged.Cached || flagged.Options.GraphRoot != o.GraphRoot || flagged.Options.RunRoot != o.RunRoot || flagged.Options.GraphDriverName != "vfs" {
		t.Fatalf("with flags: %+v", flagged)
	}
	if _, err := os.Stat(filepath.Join(o.GraphRoot, "libpod")); err != nil {
		t.Fatalf("podman was not pointed at --root: %v", err)
	}
	if got := podmanStore(t, o.PodmanArgs()...); got.GraphRoot != o.GraphRoot || got.RunRoot != o.RunRoot {
		t.Fatalf("podman with flags says %+v", got)
	}
	// Each set of overrides has its own entry: the default one is intact.
	if res, err := r.Resolve(ctx, Options{}); err != nil || !res.Cached {
		t.Fatalf("default entry after a flagged resolve: %+v %v", res, err)
	}

	// podman fails (driver differs from the one its database recorded):
	// the error says why, in podman's words; no store is guessed.
	_, err = r.Resolve(ctx, Options{Driver: "overlay"})
	if err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("podman failure: %v", err)
	}

	// A cache file another user could have written is ignored.
	cf, err := r.cacheFile(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cf, 0o666); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Resolve(ctx, Options{}); err != nil || res.Cached {
		t.Fatalf("world-writable cache used: %+v %v", res, err)
	}
	var e cacheEntry
	data, err := os.ReadFile(cf)
	if err != nil || json.Unmarshal(data, &e) != nil || e.Info.Store.GraphRoot != dir+"/g3" {
		t.Fatalf("cache rewritten: %v %s", err, data)
	}
}

// TestHandoff: the resolution travels to the re-executed child in the
// environment, only to that child, and only for the same overrides.
func TestHandoff(t *testing.T) {
	o := Options{GraphRoot: "/g"}
	res := Resolution{Source: SourcePodman, PodmanVersion: "5.4.2"}
	res.Options.GraphRoot, res.Options.RunRoot, res.Options.GraphDriverName = "/g", "/r", "overlay"
	res.Options.GraphDriverOptions = []string{"overlay.mountopt=nodev"}
	data, err := json.Marshal(handoff{Options: o, Resolution: res})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(HandoffEnv, string(data))
	if h, err := TakeHandoff(); err != nil || h != nil {
		t.Fatalf("outside the user namespace: %v %v", h, err)
	}
	if _, ok := os.LookupEnv(HandoffEnv); ok {
		t.Fatal("not unset")
	}
	t.Setenv(HandoffEnv, string(data))
	t.Setenv("_CONTAINERS_USERNS_CONFIGURED", "done")
	h, err := TakeHandoff()
	if err != nil || h == nil {
		t.Fatalf("in the child: %v %v", h, err)
	}
	if _, ok := os.LookupEnv(HandoffEnv); ok {
		t.Fatal("not unset")
	}
	got, err := h.Resolution(o)
	if err != nil || got.Options.GraphRoot != "/g" || got.Options.GraphDriverOptions[0] != "overlay.mountopt=nodev" || got.PodmanVersion != "5.4.2" {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := h.Resolution(Options{}); err == nil {
		t.Fatal("handoff for other overrides accepted")
	}
}

// TestResolveAdditionalImageStores: podman 4.3.1 info keeps only the last
// of several additional image stores; the library's reading of the same
// storage.conf agrees with it, so its full list (in order) is used, and
// pull options come from it too.
func TestResolveAdditionalImageStores(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman")
	dir, err := os.MkdirTemp("", "stwg-ais-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "storage.conf")
	body := "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + dir + "/g\"\nrunroot = \"" + dir + "/r\"\n" +
		"[storage.options]\nadditionalimagestores = [\"" + dir + "/a\", \"" + dir + "/b\"]\n" +
		"pull_options = {enable_partial_images = \"false\"}\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	res, err := Resolver{NoCache: true}.Resolve(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"imagestore=" + dir + "/a", "imagestore=" + dir + "/b"}
	if !slices.Equal(res.Options.GraphDriverOptions, want) || res.Options.PullOptions["enable_partial_images"] != "false" || len(res.Notes) != 0 {
		t.Errorf("%+v", res)
	}
	// What podman itself reports is consistent with that list.
	got := podmanStore(t)
	opts, err := podmanDriverOptions(got.GraphOptions)
	if err != nil || len(opts) == 0 || !strings.HasSuffix(opts[len(opts)-1], dir+"/b") {
		t.Errorf("podman reports %q (%v)", opts, err)
	}
}

// TestHandoffQuota: the disk quota the parent read travels with the store,
// and the child uses it only for the same graphroot and only when the
// kernel's uid map says this process is, outside its user namespace, the
// uid the quota was read for.
func TestHandoffQuota(t *testing.T) {
	dir := t.TempDir()
	uidMap := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootless := uidMap("rootless", "         0       1000          1\n         1     100000      65536\n")
	initial := uidMap("initial", "         0          0 4294967295\n")
	other := uidMap("other", "         0       1001          1\n")
	q := &quota.Reading{Path: "/g", UID: 1000, Usage: quota.Usage{SoftLimitBytes: 1 << 30, HardLimitBytes: 2 << 30, UsedBytes: 1 << 29}}
	res := Resolution{Source: SourcePodman}
	res.Options.GraphRoot = "/g"
	data, err := json.Marshal(handoff{Options: Options{}, Resolution: res, Quota: q})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(HandoffEnv, string(data))
	t.Setenv("_CONTAINERS_USERNS_CONFIGURED", "done")
	h, err := TakeHandoff()
	if err != nil || h == nil {
		t.Fatalf("in the child: %v %v", h, err)
	}
	got, err := h.quota("/g", rootless, 0)
	if err != nil || got.Usage != q.Usage || got.UID != 1000 {
		t.Fatalf("%+v %v", got, err)
	}
	for name, tc := range map[string]struct {
		root, uidMap string
		uid          int
	}{
		"other graphroot":        {"/other", rootless, 0},
		"initial user namespace": {"/g", initial, 0},
		"other user":             {"/g", other, 0},
		"unmapped uid":           {"/g", rootless, 70000},
		"no uid map":             {"/g", filepath.Join(dir, "absent"), 0},
	} {
		if got, err := h.quota(tc.root, tc.uidMap, tc.uid); err == nil {
			t.Errorf("%s: reading accepted: %+v", name, got)
		}
	}
	// A handoff without a reading (other jobs) is an error for prune, not
	// "no quota".
	data, _ = json.Marshal(handoff{Resolution: res})
	t.Setenv(HandoffEnv, string(data))
	if h, err = TakeHandoff(); err != nil || h == nil {
		t.Fatal(h, err)
	}
	if got, err := h.quota("/g", rootless, 0); err == nil {
		t.Errorf("no reading handed over, got %+v", got)
	}
}

func TestOutsideUID(t *testing.T) {
	m := "0 1000 1\n1 100000 65536\n"
	for _, tc := range []struct {
		uid, want int
		ok        bool
	}{{0, 1000, true}, {1, 100000, true}, {65536, 165535, true}, {65537, 0, false}} {
		got, ok := OutsideUID(m, tc.uid)
		if got != tc.want || ok != tc.ok {
			t.Errorf("OutsideUID(%d) = %d %v, want %d %v", tc.uid, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := OutsideUID("garbage\n", 0); ok {
		t.Error("garbage map parsed")
	}
}
