package prune_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/test/testenv"
)

// pruneErr runs `stowage run prune --format json EXTRA` and returns the
// report it printed and its exit error.
func (e *env) pruneErr(t *testing.T, extra ...string) (*prune.Report, error) {
	t.Helper()
	args := e.stowageArgs(append([]string{"run", "prune", "--format", "json", "--quadlet-dir", e.quadlet}, extra...)...)
	out, err := testenv.RunErr(e.p.Env, testenv.Stowage(t), append(e.p.Flags(), args...)...)
	var r prune.Report
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		return nil, fmt.Errorf("no report (%v): %w", jerr, err)
	}
	return &r, err
}

// layerIDs lists the store's layers as containers/storage sees them.
func layerIDs(t *testing.T, p *testenv.Podman) []string {
	t.Helper()
	st, err := storage.GetStore(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = st.Shutdown(false) }()
	ls, err := st.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, len(ls))
	for _, l := range ls {
		ids = append(ids, l.ID)
	}
	return ids
}

// TestInconsistentStoreRefused is the regression test for issue 12 item 2:
// when images.json is `[]`, empty or missing while layers (and containers)
// exist, containers/storage lists no images and every layer looks
// orphaned. Before the fix the default policy's orphan pass removed every
// layer; now prune removes nothing, says why and exits non-zero.
func TestInconsistentStoreRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		container bool
		damage    func(path string) error
	}{
		{"brackets with a container", true, func(p string) error { return os.WriteFile(p, []byte("[]"), 0o600) }},
		{"brackets", false, func(p string) error { return os.WriteFile(p, []byte("[]"), 0o600) }},
		{"empty", true, func(p string) error { return os.WriteFile(p, nil, 0o600) }},
		{"missing", true, os.Remove},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "vfs")
			imp(t, e.p, "localhost/base:1", "base")
			e.p.Build(t, "localhost/child:1", "localhost/base:1", map[string]string{"/child": "child"})
			imp(t, e.p, "localhost/other:1", "other")
			if tc.container {
				e.p.Run(t, "create", "--name", "c-app", "localhost/child:1", "/bin/true")
			}
			e.writePolicy(t, "") // the default policy: orphan_layers = true
			now := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
			// A healthy run first: it records the store's counts.
			if r, err := e.pruneErr(t, "--now", now); err != nil || len(r.Refused) > 0 {
				t.Fatalf("healthy store: %v %+v", err, r)
			}
			before := layerIDs(t, e.p)
			if len(before) < 3 {
				t.Fatalf("layers before: %v", before)
			}
			if err := tc.damage(filepath.Join(e.p.Root, "vfs-images", "images.json")); err != nil {
				t.Fatal(err)
			}
			for _, dry := range []bool{true, false} {
				args := []string{"--now", now}
				if dry {
					args = append(args, "--dry-run")
				}
				r, err := e.pruneErr(t, args...)
				if err == nil {
					t.Errorf("dry=%v: prune of an inconsistent store exited 0", dry)
				}
				if r == nil || len(r.Refused) == 0 || len(r.Removed) != 0 {
					t.Fatalf("dry=%v: report %+v", dry, r)
				}
				t.Logf("dry=%v: refused: %q", dry, r.Refused)
			}
			if after := layerIDs(t, e.p); len(after) != len(before) {
				t.Errorf("layers %d → %d: prune removed layers of an inconsistent store", len(before), len(after))
			}
		})
	}
}

// TestConcurrentPullsSurvivePrune is the regression test for issue 12
// item 4: prune runs back to back, with min_age = "0" and orphan layers on,
// while podman pulls multi-layer images from a local registry. A pull
// writes its layers before it records the image; before the fix prune took
// those layers for orphans and pulls failed with `layer not known`.
func TestConcurrentPullsSurvivePrune(t *testing.T) {
	testenv.RequireTool(t, "skopeo")
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	const images, layers = 24, 6
	for i := 0; i < images; i++ {
		var ls [][]byte
		for j := 0; j < layers; j++ {
			ls = append(ls, testenv.TarBytes(t, map[string]string{
				fmt.Sprintf("/l%d", j): strings.Repeat(fmt.Sprintf("image %d layer %d ", i, j), 1<<13),
			}))
		}
		layout := writeOCI(t, ls)
		testenv.Run(t, nil, "skopeo", "copy", "-q", "--dest-tls-verify=false",
			"oci:"+layout+":latest", fmt.Sprintf("docker://%s/pull%d:1", reg.Addr, i))
	}

	e := newEnv(t, "vfs")
	imp(t, e.p, "localhost/resident:1", "resident") // the store is not empty
	e.writePolicy(t, `min_age = "0"
orphan_layers = true
dangling = true`)

	var failed []string
	for round := 0; round < 3; round++ {
		pullsDone, pruneDone := make(chan struct{}), make(chan struct{})
		var (
			mu     sync.Mutex
			wg     sync.WaitGroup
			prunes int
		)
		go func() { // prune, back to back, until the pulls are over
			defer close(pruneDone)
			for {
				select {
				case <-pullsDone:
					return
				default:
				}
				if _, err := e.pruneErr(t); err != nil {
					t.Logf("prune during pulls: %v", err)
				}
				prunes++
			}
		}()
		for i := 0; i < images; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				ref := fmt.Sprintf("%s/pull%d:1", reg.Addr, i)
				if _, err := testenv.RunErr(e.p.Env, "podman", append(e.p.Flags(), "pull", "-q", "--tls-verify=false", ref)...); err != nil {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("round %d: %s: %v", round, ref, err))
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		close(pullsDone)
		<-pruneDone
		t.Logf("round %d: %d prune runs during the pulls", round, prunes)
		e.p.Run(t, "rmi", "-a", "-f")
		imp(t, e.p, "localhost/resident:1", "resident")
	}
	for _, f := range failed {
		t.Error(f)
	}
	checkStore(t, e.p)
}

// writeOCI writes an OCI image layout holding one image of the given
// uncompressed tar layers (bottom first), tagged "latest".
func writeOCI(t *testing.T, layers [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) map[string]any {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"digest": d.String(), "size": len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var descs []map[string]any
	var diffIDs []string
	for _, l := range layers {
		d := put(l)
		d["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
		descs = append(descs, d)
		diffIDs = append(diffIDs, d["digest"].(string))
	}
	cfg := put(mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	}))
	cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
	man := put(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfg, "layers": descs,
	}))
	man["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	man["annotations"] = map[string]string{"org.opencontainers.image.ref.name": "latest"}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), mustJSON(map[string]any{"schemaVersion": 2, "manifests": []any{man}}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
