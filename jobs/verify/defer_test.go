package verify_test

import (
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
)

// TestDeferredIntegrity: with the integrity scan deferred (the daemon's
// decision on battery or a metered connection) a verify run with
// [verify] integrity = true still judges every name against the trust
// policy, but re-hashes no layer and says why; without the deferral the
// same policy scans.
func TestDeferredIntegrity(t *testing.T) {
	h := newHarness(t, "vfs", "[verify]\nintegrity = true\n")
	h.p.Import(t, "localhost/deferred:1", map[string]string{"f": "layer to re-hash"})

	rep := h.verify(t, "--defer-integrity", "on battery")
	if len(rep.Results) != 1 || rep.Results[0].Reference != "localhost/deferred:1" {
		t.Fatalf("signatures not verified in a deferred run: %+v", rep.Results)
	}
	if len(rep.Layers) != 0 {
		t.Fatalf("layers re-hashed in a deferred run: %+v", rep.Layers)
	}
	if rep.IntegrityDeferred != "on battery" || rep.Metrics[report.MetricIntegrityDeferred] != 1 || !strings.HasSuffix(rep.Summary, "; integrity scan deferred: on battery") {
		t.Fatalf("report does not say the scan was deferred: %q %v %q", rep.IntegrityDeferred, rep.Metrics, rep.Summary)
	}

	rep = h.verify(t)
	if len(rep.Layers) != 1 || rep.IntegrityDeferred != "" || rep.Metrics[report.MetricIntegrityDeferred] != 0 || strings.Contains(rep.Summary, "deferred") {
		t.Fatalf("catch-up run: layers %+v, deferred %q, figures %v, summary %q", rep.Layers, rep.IntegrityDeferred, rep.Metrics, rep.Summary)
	}
}
