// Package prometheus_test checks the Prometheus alerting rules and the
// Grafana dashboard shipped in packaging/: promtool accepts the rules and
// their unit tests pass, and both use only metrics stowage documents.
package prometheus_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/service/metrics"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

const (
	rules     = "stowage-alerts.yml"
	ruleTests = "stowage-alerts_test.yml"
	dashboard = "../grafana/stowage-dashboard.json"
)

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	testenv.RequireTool(t, "promtool")
	out, err := exec.Command("promtool", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesCheck(t *testing.T) {
	out := promtool(t, "check", "rules", rules)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

// TestRulesUnitTests runs the rules' unit tests and checks that every alert
// has a firing and a quiet case in them.
func TestRulesUnitTests(t *testing.T) {
	out := promtool(t, "test", "rules", ruleTests)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(read(t, rules), -1)
	if len(alerts) == 0 {
		t.Fatal("no alerts in the rules")
	}
	tests := read(t, ruleTests)
	for _, a := range alerts {
		name := a[1]
		// Each test case is "alertname: X" followed by exp_alerts: [] (quiet)
		// or a list (firing).
		cases := regexp.MustCompile(`alertname: `+name+`\n\s*exp_alerts:( \[\])?`).FindAllStringSubmatch(tests, -1)
		var quiet, firing bool
		for _, c := range cases {
			if c[1] != "" {
				quiet = true
			} else {
				firing = true
			}
		}
		if !quiet || !firing {
			t.Errorf("alert %s: firing case %v, quiet case %v in %s", name, firing, quiet, ruleTests)
		}
	}
}

// metricNames are the stowage_* names an expression text uses (the label
// stowage_job aside), histogram series suffixes folded onto their family.
func metricNames(text string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`\bstowage_[a-z0-9_]+`).FindAllString(text, -1) {
		if m == metrics.JobLabel {
			continue
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suf); ok && documented(base) {
				m = base
			}
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

func documented(name string) bool {
	return slices.ContainsFunc(metrics.Families(testjobs.Registry()), func(f metrics.Family) bool { return f.Name == name })
}

// exprs are the rule expressions (the annotations name metrics in prose).
func exprs(t *testing.T) string {
	var b strings.Builder
	for _, m := range regexp.MustCompile(`(?m)^\s*expr: (.+)$`).FindAllStringSubmatch(read(t, rules), -1) {
		b.WriteString(m[1] + "\n")
	}
	return b.String()
}

func TestRulesAndDashboardUseDocumentedMetrics(t *testing.T) {
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal([]byte(read(t, dashboard)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboard, err)
	}
	var dashExprs strings.Builder
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			dashExprs.WriteString(tg.Expr + "\n")
		}
	}
	for _, v := range dash.Templating.List {
		dashExprs.WriteString(v.Definition + "\n")
	}
	for file, text := range map[string]string{rules: exprs(t), dashboard: dashExprs.String()} {
		names := metricNames(text)
		if len(names) < 5 {
			t.Errorf("%s: only %v found", file, names)
		}
		for _, n := range names {
			if !documented(n) {
				t.Errorf("%s uses %s, which is not in metrics.Families", file, n)
			}
		}
	}
	// No rule relies on a live-only series: the textfile lacks them.
	for _, n := range metricNames(exprs(t)) {
		for _, f := range metrics.Families(testjobs.Registry()) {
			if f.Name == n && f.Live {
				t.Errorf("%s uses %s, which is not in the textfile", rules, n)
			}
		}
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
