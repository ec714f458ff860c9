package metrics

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

// fullInput has a figure for every documented family.
func fullInput() Input {
	return Input{
		Last: map[string]*api.Run{
			"prune":   {Job: "prune", Started: t0, Finished: t0.Add(1500 * time.Millisecond), Outcome: api.OutcomeSucceeded},
			"refresh": {Job: "refresh", Started: t0, Finished: t0.Add(2 * time.Second), Outcome: api.OutcomeFailed},
		},
		Stats: map[string]runs.Stats{
			"prune": {
				Runs:          map[api.Outcome]uint64{api.OutcomeSucceeded: 3, api.OutcomeFailed: 1},
				DurationCount: 4, DurationSum: 6, DurationBuckets: []uint64{0, 0, 3, 4, 4, 4, 4, 4, 4, 4},
				LastSuccess: t0.Add(1500 * time.Millisecond), FreedBytes: 1 << 20,
				Metrics: map[string]float64{"freed_bytes": 4096, "usage_bytes": 1e9, "limit_bytes": 2e9, "pressure_need_bytes": 0,
					"shortfall_bytes": 0, "removed_images": 2, "removed_layers": 1, "kept_images": 7, "refused": 0, "planned_free_bytes": 4096,
					"quota_used_bytes": 5e8, "quota_soft_limit_bytes": 8e8, "quota_hard_limit_bytes": 1e9},
			},
			"refresh": {Runs: map[api.Outcome]uint64{api.OutcomeFailed: 1},
				Metrics: map[string]float64{"checked": 5, "current": 2, "drifted": 2, "missing": 0, "blocked": 0, "errors": 1,
					"drift_pending": 1, "drift_oldest_first_seen": float64(t0.Add(-48 * time.Hour).Unix()), "pulled": 1,
					"head_requests": 5, "get_requests": 2, "new_drifts": 1, "tags_requests": 3,
					"newer_pending": 2, "newer_oldest_first_seen": float64(t0.Add(-24 * time.Hour).Unix())}},
			"verify": {Metrics: map[string]float64{"accepted": 4, "rejected": 1, "unsigned": 0, "errors": 0, "insecure": 1,
				"untagged": 1, "removed": 0, "layers_checked": 9, "corrupted_layers": 0, "layer_bytes": 123}},
			"volumes": {Metrics: map[string]float64{"removed": 2, "kept": 1, "freed_bytes": 512}},
		},
		Periods: map[string]time.Duration{"prune": time.Hour, "refresh": 24 * time.Hour},
	}
}

func gather(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func TestBuild(t *testing.T) {
	m := New(testjobs.Registry())
	m.Update(fullInput())
	m.SetRunning("verify", true)
	file, live := gather(t, m.File()), gather(t, m.Live())
	for _, want := range []string{
		`stowage_job_last_run_timestamp_seconds{stowage_job="prune"} 1.7960940015e+09`,
		`stowage_job_last_run_success{stowage_job="refresh"} 0`,
		`stowage_job_last_run_success{stowage_job="prune"} 1`,
		`stowage_job_last_run_duration_seconds{stowage_job="prune"} 1.5`,
		`stowage_job_last_success_timestamp_seconds{stowage_job="prune"} 1.7960940015e+09`,
		`stowage_job_runs_total{outcome="succeeded",stowage_job="prune"} 3`,
		`stowage_job_runs_total{outcome="timed_out",stowage_job="volumes"} 0`,
		`stowage_job_duration_seconds_bucket{stowage_job="prune",le="1.6"} 3`,
		`stowage_job_duration_seconds_bucket{stowage_job="prune",le="+Inf"} 4`,
		`stowage_job_duration_seconds_sum{stowage_job="prune"} 6`,
		`stowage_job_freed_bytes_total{stowage_job="prune"} 1.048576e+06`,
		`stowage_job_freed_bytes_total{stowage_job="volumes"} 0`,
		`stowage_job_schedule_period_seconds{stowage_job="prune"} 3600`,
		`stowage_policy_valid 1`,
		`stowage_refresh_references{status="error"} 1`,
		`stowage_refresh_drift_pending_references 1`,
		`stowage_refresh_drift_oldest_first_seen_timestamp_seconds 1.7959212e+09`,
		`stowage_refresh_requests{method="GET"} 2`,
		`stowage_refresh_requests{method="tags_list"} 3`,
		`stowage_refresh_newer_pending_references 2`,
		`stowage_refresh_newer_oldest_first_seen_timestamp_seconds 1.7960076e+09`,
		`stowage_verify_names{status="rejected"} 1`,
		`stowage_prune_quota_hard_limit_bytes 1e+09`,
		`stowage_volumes_freed_bytes 512`,
		"# TYPE stowage_job_runs_total counter",
		"# TYPE stowage_job_duration_seconds histogram",
		"# TYPE stowage_prune_usage_bytes gauge",
	} {
		if !strings.Contains(file, want+"\n") {
			t.Errorf("textfile lacks %s", want)
		}
		if !strings.Contains(live, want+"\n") {
			t.Errorf("live lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("textfile:\n%s", file)
	}
	// Figures outside the documented set are not exported.
	for _, not := range []string{"new_drifts", "layer_bytes", "refresh_checked", "planned_free"} {
		if strings.Contains(file, not) {
			t.Errorf("undocumented figure %s exported", not)
		}
	}
	// Live-only series are only live.
	for _, liveOnly := range []string{`stowage_job_running{stowage_job="verify"} 1`, "go_goroutines", "process_"} {
		if strings.Contains(file, liveOnly) || !strings.Contains(live, liveOnly) {
			t.Errorf("%s: in textfile %v, live %v", liveOnly, strings.Contains(file, liveOnly), strings.Contains(live, liveOnly))
		}
	}
	// Every documented family appears (so none is documented but dead),
	// with its documented type.
	for _, f := range Families(testjobs.Registry()) {
		if !strings.Contains(live, "# TYPE "+f.Name+" "+f.TypeName()+"\n") {
			t.Errorf("family %s (%s) not exported", f.Name, f.TypeName())
		}
	}
}

func TestBuildOmits(t *testing.T) {
	in := Input{
		Last:          map[string]*api.Run{},
		Stats:         map[string]runs.Stats{"refresh": {Metrics: map[string]float64{"drift_pending": 0, "drift_oldest_first_seen": 0}}},
		PolicyInvalid: true,
	}
	m := New(testjobs.Registry())
	m.Update(in)
	text := gather(t, m.File())
	for _, absent := range []string{"stowage_refresh_drift_oldest_first_seen_timestamp_seconds", "stowage_job_last_run_timestamp_seconds",
		"stowage_job_last_success_timestamp_seconds", "stowage_job_schedule_period_seconds", "stowage_prune_"} {
		if strings.Contains(text, absent) {
			t.Errorf("%s exported without a figure:\n%s", absent, text)
		}
	}
	for _, want := range []string{"stowage_policy_valid 0", "stowage_refresh_drift_pending_references 0",
		`stowage_job_runs_total{outcome="failed",stowage_job="prune"} 0`} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("lacks %s:\n%s", want, text)
		}
	}
}

// TestPromtoolCheckMetrics runs promtool's linter on both expositions.
func TestPromtoolCheckMetrics(t *testing.T) {
	m := New(testjobs.Registry())
	m.Update(fullInput())
	m.SetRunning("prune", true)
	for name, g := range map[string]prometheus.Gatherer{"textfile": m.File(), "live": m.Live()} {
		PromtoolCheck(t, name, gather(t, g))
	}
}

// PromtoolCheck fails t unless `promtool check metrics` finds nothing to
// complain about in text.
func PromtoolCheck(t *testing.T, what, text string) {
	t.Helper()
	testenv.RequireTool(t, "promtool")
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics (%s): %v\n%s", what, err, out)
	}
}

func TestPeriod(t *testing.T) {
	from := time.Date(2026, 12, 2, 10, 17, 0, 0, time.UTC)
	for _, c := range []struct {
		spec string
		want time.Duration
	}{
		{"@hourly", time.Hour},
		{"@daily", 24 * time.Hour},
		{"@weekly", 7 * 24 * time.Hour},
		{"@every 90m", 90 * time.Minute},
		{"*/15 * * * *", 15 * time.Minute},
		{"0 3 * * 1-5", 72 * time.Hour}, // Friday 03:00 to Monday 03:00
		{"0 0 1 * *", 31 * 24 * time.Hour},
		{"* * * * 1-5", 48*time.Hour + time.Minute}, // Friday 23:59 to Monday 00:00
	} {
		s, err := policy.ParseCron(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if got := Period(s, from); got != c.want {
			t.Errorf("Period(%q) = %v, want %v", c.spec, got, c.want)
		}
	}
	if got := Period(nil, from); got != 0 {
		t.Errorf("Period(nil) = %v", got)
	}
}

func TestResolveTextfile(t *testing.T) {
	dir := t.TempDir()
	ne := filepath.Join(dir, "node-exporter")
	if err := os.Mkdir(ne, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		setting policy.Textfile
		system  bool
		neDir   string
		want    string
		why     string
	}{
		{"", true, ne, "", `textfile = ""`},
		{"auto", true, ne, filepath.Join(ne, "stowage.prom"), ""},
		{"auto", true, filepath.Join(dir, "absent"), "", "does not exist"},
		{"auto", false, ne, "", "user mode"},
		{"/srv/m/x.prom", false, ne, "/srv/m/x.prom", ""},
		{"/srv/m/x.prom", true, ne, "/srv/m/x.prom", ""},
	} {
		got, why := ResolveTextfile(c.setting, c.system, c.neDir)
		if got != c.want || !strings.Contains(why, c.why) || (c.why == "") != (why == "") {
			t.Errorf("ResolveTextfile(%q, system=%v, %s) = %q, %q; want %q, %q", c.setting, c.system, c.neDir, got, why, c.want, c.why)
		}
	}
	if got, _ := ResolveTextfile("auto", true, ""); got != "" && got != filepath.Join(NodeExporterDir, TextfileName) {
		t.Errorf("default directory: %q", got)
	}
}

func TestWriteTextfile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stowage.prom")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := New(testjobs.Registry())
	m.Update(fullInput())
	old := syscall.Umask(0o077) // the file is 0644 whatever the umask
	err := WriteTextfile(path, m.File())
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if string(b) != gather(t, m.File()) {
		t.Fatalf("content:\n%s", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
	// A missing directory is an error, and is not created.
	missing := filepath.Join(dir, "no", "stowage.prom")
	if err := WriteTextfile(missing, m.File()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !os.IsNotExist(err) {
		t.Fatalf("directory created: %v", err)
	}
}

// TestREADMEDocumentsEveryFamily: the README's metrics table lists every
// family with its type.
func TestREADMEDocumentsEveryFamily(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, f := range Families(testjobs.Registry()) {
		row := regexp.MustCompile("(?m)^\\| `" + regexp.QuoteMeta(f.Name) + "(\\{[^`]*\\})?` \\| " + f.TypeName() + " \\|")
		if !row.MatchString(readme) {
			t.Errorf("README has no row `| `%s{...}` | %s | ...`", f.Name, f.TypeName())
		}
	}
}
