package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestDfVolumes: `stowage df --volumes yes` counts podman's volumes through
// a private podman service over the same store.
func TestDfVolumes(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.Import(t, "localhost/base:1", map[string]string{"hello": "hi"})
	// One anonymous volume left dangling, one named volume still in use.
	p.Run(t, "create", "--name", "gone", "-v", "/data", "localhost/base:1", "true")
	p.Run(t, "rm", "gone")
	p.Run(t, "volume", "create", "named")
	p.Run(t, "create", "--name", "user", "-v", "named:/data", "localhost/base:1", "true")

	pol := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[volumes]\nmin_age = \"0s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := p.Stowage(t, "--policy", pol, "df", "--format", "json", "--volumes", "yes")
	var df struct {
		Volumes *struct {
			Count         int   `json:"count"`
			DanglingCount int   `json:"dangling_count"`
			Bytes         int64 `json:"bytes"`
		} `json:"volumes"`
		Containers struct {
			Count int `json:"count"`
		} `json:"containers"`
	}
	if err := json.Unmarshal([]byte(out), &df); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if df.Volumes == nil || df.Volumes.Count != 2 || df.Volumes.DanglingCount != 1 {
		t.Fatalf("volumes section = %+v, want 2 volumes, 1 dangling\n%s", df.Volumes, out)
	}
	if df.Containers.Count != 1 {
		t.Fatalf("containers = %d, want 1", df.Containers.Count)
	}
	// --volumes no leaves the section out.
	out = p.Stowage(t, "--policy", pol, "df", "--format", "json", "--volumes", "no")
	df.Volumes = nil
	if err := json.Unmarshal([]byte(out), &df); err != nil || df.Volumes != nil {
		t.Fatalf("--volumes no still has a section: %v\n%s", err, out)
	}
}
