package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/runs"
)

// pruneReportScript reports the figures a real prune run reports.
const pruneReportScript = `printf '{"job":"%s","summary":"ok","events":[],"metrics":{"freed_bytes":4096,"usage_bytes":8192,"limit_bytes":10000,"pressure_need_bytes":5000,"shortfall_bytes":904,"refused":0}}\n' "$2"`

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantLines(t *testing.T, what, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains("\n"+text, "\n"+l+"\n") {
			t.Fatalf("%s lacks %q:\n%s", what, l, text)
		}
	}
}

// TestMetricsTextfileAuto: textfile = "auto" in system mode writes
// stowage.prom into the node exporter's directory at start and after every
// run, from the state database, so a new daemon (the file removed) writes
// the same counters again; without the directory nothing is written and the
// directory is not created.
func TestMetricsTextfileAuto(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	store := runs.New(db, 0)
	neDir := filepath.Join(dir, "node-exporter")
	pol := basePolicy + "[metrics]\ntextfile = \"auto\"\n"
	mod := func(o *Options) { o.System, o.NodeExporterDir, o.Runs, o.State = true, neDir, store, db }

	// No directory: no file, no directory.
	h := start(t, shWorker(pruneReportScript), pol, mod)
	if _, err := h.c.Status(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.stop(t)
	if _, err := os.Stat(neDir); !os.IsNotExist(err) {
		t.Fatalf("node exporter directory created: %v", err)
	}

	if err := os.Mkdir(neDir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(neDir, "stowage.prom")
	h = start(t, shWorker(pruneReportScript), pol, mod)
	waitFor(t, "textfile at start", func() bool { _, err := os.Stat(file); return err == nil })
	text := readFile(t, file)
	wantLines(t, "textfile at start", text, "stowage_policy_valid 1",
		`stowage_job_schedule_period_seconds{stowage_job="prune"} 3600`,
		`stowage_job_schedule_period_seconds{stowage_job="refresh"} 86400`,
		`stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 0`)
	if strings.Contains(text, "stowage_job_last_run_timestamp_seconds") {
		t.Fatalf("a last run before any run:\n%s", text)
	}
	ctx := t.Context()
	r, err := h.c.Trigger(ctx, "prune", false)
	if err != nil {
		t.Fatal(err)
	}
	if r, err = h.c.Wait(ctx, r.ID); err != nil || r.Outcome != api.OutcomeSucceeded {
		t.Fatalf("run = %+v, %v", r, err)
	}
	waitFor(t, "textfile after the run", func() bool {
		return strings.Contains(readFile(t, file), `stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`)
	})
	text = readFile(t, file)
	wantLines(t, "textfile after the run", text, "stowage_prune_freed_bytes 4096", "stowage_prune_shortfall_bytes 904",
		`stowage_job_freed_bytes_total{stowage_job="prune"} 4096`, `stowage_job_last_run_success{stowage_job="prune"} 1`,
		`stowage_job_duration_seconds_count{stowage_job="prune"} 1`)
	for _, live := range []string{"go_", "process_", "stowage_job_running"} {
		if strings.Contains(text, "\n"+live) {
			t.Fatalf("textfile has live metrics %s:\n%s", live, text)
		}
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("textfile mode: %v %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(neDir, ".*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	// An invalid reload is in the file too.
	writePolicy(t, h.policy, "version = 1\nbogus = 1\n")
	if res, _ := h.c.Reload(ctx); res.OK {
		t.Fatal("invalid policy accepted")
	}
	wantLines(t, "textfile after a bad reload", readFile(t, file), "stowage_policy_valid 0")
	h.stop(t)

	// A new daemon rebuilds the same figures from the state database.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	h = start(t, shWorker(pruneReportScript), pol, mod)
	waitFor(t, "textfile after restart", func() bool { _, err := os.Stat(file); return err == nil })
	text = readFile(t, file)
	wantLines(t, "textfile after restart", text, `stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 1`,
		`stowage_job_freed_bytes_total{stowage_job="prune"} 4096`, "stowage_prune_freed_bytes 4096", "stowage_policy_valid 1")
	for _, fam := range []string{"stowage_job_last_run_timestamp_seconds", "stowage_job_last_success_timestamp_seconds"} {
		if !strings.Contains(text, fam+`{stowage_job="prune"} `) {
			t.Fatalf("%s lost across the restart:\n%s", fam, text)
		}
	}
}
