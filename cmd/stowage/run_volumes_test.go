package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// TestRunVolumesPodmanChoseDriver: storage.conf sets graphroot and runroot
// but no driver (sid; Debian's root default has no storage.conf at all), so
// podman's database records the driver "". stowage, given no store flags,
// must start its private podman service with podman's own configuration:
// a --storage-driver it derived itself makes podman refuse ("database graph
// driver "" does not match our graph driver "overlay"").
func TestRunVolumesPodmanChoseDriver(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	conf := filepath.Join(p.Dir(), "storage.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[storage]\ngraphroot = %q\nrunroot = %q\n", p.Root, p.RunRoot)), 0o644); err != nil {
		t.Fatal(err)
	}
	podman := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(testenv.Run(t, p.Env, "podman", args...))
	}
	// NewPodman's cleanup passes --storage-driver, which this store refuses.
	t.Cleanup(func() { _, _ = testenv.RunErr(p.Env, "podman", "system", "reset", "-f") })

	podman("import", "-q", writeTar(t), "localhost/base:1")
	podman("create", "--name", "gone", "-v", "/data", "localhost/base:1", "true")
	podman("rm", "gone")
	vols := strings.Fields(podman("volume", "ls", "-q"))
	if len(vols) != 1 {
		t.Fatalf("volumes %v, want one anonymous volume", vols)
	}
	if drv := podman("info", "--format", "{{.Store.GraphDriverName}}"); drv == "" {
		t.Fatal("podman info names no driver")
	}

	pol := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[volumes]\nmin_age = \"0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := testenv.RunErr(p.Env, testenv.Stowage(t), "--policy", pol, "run", "volumes", "--format", "json")
	if err != nil {
		t.Fatalf("stowage run volumes: %v\n%s", err, out)
	}
	var r struct {
		Removed []struct {
			Name string `json:"name"`
		} `json:"removed"`
		PodmanStarted bool `json:"podman_started"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(r.Removed) != 1 || r.Removed[0].Name != vols[0] || !r.PodmanStarted {
		t.Fatalf("report %+v, want %s removed by a started service\n%s", r, vols[0], out)
	}
	if left := podman("volume", "ls", "-q"); left != "" {
		t.Fatalf("volumes left: %s", left)
	}
}

// writeTar writes a one-file root filesystem tarball for `podman import`.
func writeTar(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(path, testenv.TarBytes(t, map[string]string{"hello": "hi"}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPodmanStoreArgs: podman gets the store settings the user chose
// (flags over the policy's [storage] keys) and nothing stowage derived.
func TestPodmanStoreArgs(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store storeopen.Options
		pol   policy.Storage
		want  []string
	}{
		{name: "nothing chosen"},
		{name: "flags", store: storeopen.Options{GraphRoot: "/g", RunRoot: "/r", Driver: "vfs", DriverOpts: []string{"a=b", "c=d"}},
			want: []string{"--root", "/g", "--runroot", "/r", "--storage-driver", "vfs", "--storage-opt", "a=b", "--storage-opt", "c=d"}},
		{name: "policy keys", pol: policy.Storage{GraphRoot: "/pg", Driver: "overlay"},
			want: []string{"--root", "/pg", "--storage-driver", "overlay"}},
		{name: "flags over policy", store: storeopen.Options{GraphRoot: "/g"}, pol: policy.Storage{GraphRoot: "/pg", RunRoot: "/pr"},
			want: []string{"--root", "/g", "--runroot", "/pr"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := &globals{store: tt.store}
			if got := g.podmanStoreArgs(&policy.Policy{Storage: tt.pol}); !slices.Equal(got, tt.want) {
				t.Errorf("args %q, want %q", got, tt.want)
			}
		})
	}
}
