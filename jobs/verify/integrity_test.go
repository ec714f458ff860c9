package verify_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/verify/integrity"
)

// TestIntegrity flips bytes in a layer's file on disk and expects that
// layer, and every image built on it, to be reported; the rest stays clean.
func TestIntegrity(t *testing.T) {
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			h := newHarness(t, driver, "[verify]\nmode = \"off\"\n")
			base := h.p.Import(t, "localhost/base:1", map[string]string{"base.txt": "base content that will be tampered with", "keep.txt": "untouched"})
			child := h.p.Build(t, "localhost/child:1", "localhost/base:1", map[string]string{"child.txt": "child layer"})
			other := h.p.Import(t, "localhost/other:1", map[string]string{"other.txt": "other"})
			h.p.Run(t, "create", "--name", "stwg-verify-int", child, "/child.txt") // its container layer has no digest

			rep := h.verify(t, "--integrity")
			if len(rep.Results) != 0 {
				t.Errorf("mode off still checked signatures: %+v", rep.Results)
			}
			if len(rep.Layers) != 3 {
				t.Fatalf("want 3 image layers checked, got %+v", rep.Layers)
			}
			var baseLayer string
			for _, l := range rep.Layers {
				if l.Status != integrity.StatusOK || l.ActualDigest != l.ExpectedDigest || l.Bytes == 0 {
					t.Errorf("clean store: %+v", l)
				}
				if slices.Contains(l.Images, base) && slices.Contains(l.Images, child) {
					baseLayer = l.ID
				}
			}
			if baseLayer == "" || rep.Metrics["corrupted_layers"] != 0 || len(rep.Events) != 0 {
				t.Fatalf("clean store: base layer %q, metrics %v, events %+v", baseLayer, rep.Metrics, rep.Events)
			}

			dir := filepath.Join(h.p.Root, "vfs", "dir", baseLayer)
			if driver == "overlay" {
				dir = filepath.Join(h.p.Root, "overlay", baseLayer, "diff")
			}
			f := filepath.Join(dir, "base.txt")
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			data[3] ^= 0x20 // same size, different content
			if err := os.WriteFile(f, data, 0o644); err != nil {
				t.Fatal(err)
			}

			rep = h.verify(t, "--integrity")
			for _, l := range rep.Layers {
				switch {
				case l.ID == baseLayer:
					if l.Status != integrity.StatusCorrupted || l.ActualDigest == l.ExpectedDigest || !slices.Equal(l.Files, []string{"base.txt"}) {
						t.Errorf("tampered layer: %+v", l)
					}
					if !slices.Contains(l.Images, base) || !slices.Contains(l.Images, child) || slices.Contains(l.Images, other) {
						t.Errorf("tampered layer's images: %v", l.Images)
					}
				case l.Status != integrity.StatusOK:
					t.Errorf("untouched layer reported: %+v", l)
				}
			}
			if rep.Metrics["corrupted_layers"] != 1 {
				t.Errorf("metrics = %v", rep.Metrics)
			}
			if len(rep.Events) != 1 || rep.Events[0].Kind != report.EventLayerCorrupted || rep.Events[0].Severity != report.SeverityCritical {
				t.Errorf("events = %+v", rep.Events)
			}

			// A deleted file is corruption too.
			if err := os.Remove(filepath.Join(dir, "keep.txt")); err != nil {
				t.Fatal(err)
			}
			rep = h.verify(t, "--integrity")
			found := false
			for _, l := range rep.Layers {
				if l.ID == baseLayer {
					found = l.Status == integrity.StatusCorrupted
				}
			}
			if !found {
				t.Errorf("deleted file not reported: %+v", rep.Layers)
			}
		})
	}
}
