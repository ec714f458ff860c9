package metrics

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

// TestNodeExporterReadsTextfile hands the textfile to Debian's real
// prometheus-node-exporter: it reads it without a scrape error and exports
// the series unchanged, stowage_job label included.
func TestNodeExporterReadsTextfile(t *testing.T) {
	testenv.RequireTool(t, "prometheus-node-exporter")
	dir := t.TempDir()
	m := New(testjobs.Registry())
	m.Update(fullInput())
	if err := WriteTextfile(filepath.Join(dir, TextfileName), m.File()); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command("prometheus-node-exporter", "--collector.disable-defaults", "--collector.textfile",
		"--collector.textfile.directory="+dir, "--web.listen-address="+addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node exporter:\n%s", stderr.String())
		}
	})
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				body = string(b)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node exporter does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		"node_textfile_scrape_error 0",
		`stowage_job_last_run_timestamp_seconds{stowage_job="prune"} 1.7960940015e+09`,
		`stowage_job_last_success_timestamp_seconds{stowage_job="prune"} 1.7960940015e+09`,
		`stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 3`,
		`stowage_job_duration_seconds_bucket{stowage_job="prune",le="+Inf"} 4`,
		`stowage_verify_names{status="rejected"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("node exporter output lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("node exporter output:\n%s", body)
	}
}
