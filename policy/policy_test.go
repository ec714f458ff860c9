package policy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedDefaultMatchesEtc(t *testing.T) {
	etc, err := os.ReadFile(filepath.Join("..", "etc", "stowage", "stowage.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(etc, defaultTOML) {
		t.Fatal("policy/default.toml differs from etc/stowage/stowage.toml: copy the etc file over it")
	}
}

func TestDefaults(t *testing.T) {
	p := Default()
	if p.Version != 1 || p.Refresh.Mode != RefreshNotify || p.Verify.Mode != VerifyReport {
		t.Fatalf("unexpected defaults: %+v", p)
	}
	if p.Prune.HighWatermark != 90 || p.Prune.LowWatermark != 80 || p.Prune.MinAge.Duration != 24*time.Hour {
		t.Fatalf("prune defaults: %+v", p.Prune)
	}
	if !p.Prune.MinFree.IsPercent || p.Prune.MinFree.Percent != 10 || !p.Prune.Quota.IsZero() {
		t.Fatalf("prune amounts: %+v", p.Prune)
	}
	if p.Schedule.Prune.Spec != "@hourly" || p.Schedule.Prune.Sched == nil {
		t.Fatalf("schedule: %+v", p.Schedule)
	}
	if p.Notify.MinUrgency != UrgencyNormal || p.Volumes.KeepLabels[0] != "io.stowage.keep" {
		t.Fatalf("notify/volumes: %+v %+v", p.Notify, p.Volumes)
	}
	if p.Metrics.Textfile != TextfileAuto {
		t.Fatalf("metrics: %+v", p.Metrics)
	}
}

func TestTextfileValues(t *testing.T) {
	for _, v := range []string{"", "auto", "/var/lib/prometheus/node-exporter/stowage.prom", "/srv/x.prom"} {
		p, err := Parse(Source{"p.toml", []byte("[metrics]\ntextfile = \"" + v + "\"\n")})
		if err != nil || string(p.Metrics.Textfile) != v {
			t.Errorf("textfile %q: %v, %+v", v, err, p)
		}
	}
}

func TestParseValid(t *testing.T) {
	p, err := Parse(Source{"a.toml", []byte(`version = 1
[prune]
quota = "20GiB"
min_free = "5%"
keep = ["docker.io/library/*"]
keep_last = 0
[[refresh.rule]]
match = "quay.io/*"
mode = "pull"
[schedule]
prune = "*/5 * * * *"
verify = "@every 6h"
`)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Prune.Quota.Bytes != 20<<30 || p.Prune.MinFree.Resolve(1000) != 50 || p.Prune.KeepLast != 0 {
		t.Fatalf("prune: %+v", p.Prune)
	}
	if len(p.Refresh.Rules) != 1 || p.Refresh.Rules[0].Mode != RefreshPull {
		t.Fatalf("rules: %+v", p.Refresh.Rules)
	}
	// Untouched keys keep their defaults.
	if p.Refresh.Concurrency != 8 || p.Schedule.Refresh.Spec != "@daily" {
		t.Fatalf("defaults lost: %+v", p.Refresh)
	}
}

// TestParseErrors checks every error class with its exact position.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, src string
		want      []string // "LINE:COL: substring"
	}{
		{"syntax", "version = 1\n[prune\n", []string{"2:7: "}},
		{"unknown top key", "version = 1\nfoo = 2\n", []string{`2:1: unknown key "foo"`}},
		{"unknown table key with suggestion", "[refresh]\nconcurency = 2\n", []string{`2:1: unknown key "refresh.concurency" (did you mean "concurrency"?)`}},
		{"unknown table", "[prunes]\nx = 1\n", []string{`1:1: unknown key "prunes" (did you mean "prune"?)`}},
		{"wrong type int", "[refresh]\nconcurrency = \"8\"\n", []string{`2:15: refresh.concurrency: expected an integer, got string "8"`}},
		{"wrong type bool", "[prune]\n  enabled = 1\n", []string{"2:13: prune.enabled: expected true or false"}},
		{"wrong type string", "[verify]\npolicy_json = 3\n", []string{"2:15: verify.policy_json: expected a string"}},
		{"wrong type array", "[prune]\nkeep = \"x\"\n", []string{"2:8: prune.keep: expected an array"}},
		{"bad cron", "[schedule]\nprune = \"61 * * * *\"\n", []string{`2:9: schedule.prune: invalid schedule "61 * * * *"`}},
		{"bad size", "[prune]\nquota = \"12XB\"\n", []string{`2:9: prune.quota: invalid size "12XB"`}},
		{"bad percent", "[prune]\nhigh_watermark = \"120%\"\n", []string{`2:18: prune.high_watermark: invalid percentage "120%"`}},
		{"percent without sign", "[prune]\nlow_watermark = \"80\"\n", []string{`2:17: prune.low_watermark: invalid percentage "80"`}},
		{"bad duration", "[prune]\nmin_age = \"1 day\"\n", []string{`2:11: prune.min_age: invalid duration "1 day"`}},
		{"negative duration", "[prune]\nmin_age = \"-1h\"\n", []string{"2:11: prune.min_age: invalid duration \"-1h\": must not be negative"}},
		{"bad mode", "[verify]\nmode = \"delete\"\n", []string{`2:8: verify.mode: invalid verify mode "delete"`}},
		{"bad urgency", "[notify]\nmin_urgency = \"high\"\n", []string{"2:15: notify.min_urgency: invalid urgency"}},
		{"out of range", "[refresh]\nper_registry = 0\n", []string{"2:16: refresh.per_registry: must be between 1 and 256, got 0"}},
		{"bad version", "version = 2\n", []string{"1:11: version: unsupported policy version 2 (this stowage understands version = 1)"}},
		{"bad glob element", "[prune]\nkeep = [\"a\",\n  \"[b\"]\n", []string{`3:3: prune.keep.1: invalid glob "[b"`}},
		{"rule without mode", "[[refresh.rule]]\nmatch = \"x/*\"\n", []string{"1:1: refresh.rule[0]: mode is required"}},
		{"bad newer level", "[refresh]\nnewer = \"all\"\n", []string{`2:9: refresh.newer: invalid newer level "all" (want off, patch, minor or major)`}},
		{"bad newer glob", "[refresh]\nnewer_exclude = [\"[x\"]\n", []string{`2:18: refresh.newer_exclude.0: invalid glob "[x"`}},
		{"bad topic glob", "[notify]\ntopics = [\"verify\", \"refresh:[x\"]\n", []string{`2:21: notify.topics.1: invalid glob "refresh:[x"`}},
		{"bad rule newer", "[[refresh.rule]]\nmatch = \"a\"\nmode = \"notify\"\nnewer = \"minorr\"\n", []string{"4:9: refresh.rule.0.newer: invalid newer level"}},
		{"pull_newer without pull", "[[refresh.rule]]\nmatch = \"a\"\nmode = \"notify\"\npull_newer = true\n", []string{`1:1: refresh.rule[0]: pull_newer needs mode = "pull"`}},
		{"second rule bad mode", "[[refresh.rule]]\nmatch = \"a\"\nmode = \"off\"\n[[refresh.rule]]\nmatch = \"b\"\nmode = \"on\"\n", []string{"6:8: refresh.rule.1.mode: invalid refresh mode"}},
		{"watermarks", "[prune]\nlow_watermark = \"95%\"\n", []string{"2:17: prune.low_watermark (95%) must be below prune.high_watermark (90%)"}},
		{"integrity rate percent", "[verify]\nintegrity_rate = \"5%\"\n", []string{"2:18: verify.integrity_rate: must be a rate"}},
		{"textfile relative", "[metrics]\ntextfile = \"stowage.prom\"\n", []string{`2:12: metrics.textfile: invalid textfile "stowage.prom" (want "", "auto" or a clean absolute path)`}},
		{"textfile not clean", "[metrics]\ntextfile = \"/var/lib/../x.prom\"\n", []string{"2:12: metrics.textfile: invalid textfile"}},
		{"textfile not .prom", "[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/stowage.txt\"\n", []string{"2:12: metrics.textfile: invalid textfile \"/var/lib/prometheus/node-exporter/stowage.txt\": the node exporter reads only files named *.prom"}},
		{"textfile Auto", "[metrics]\ntextfile = \"Auto\"\n", []string{"2:12: metrics.textfile: invalid textfile \"Auto\""}},
		{"textfile not a string", "[metrics]\ntextfile = false\n", []string{"2:12: metrics.textfile: expected a string"}},
		{"several at once", "foo = 1\n[prune]\nquota = \"x\"\nmin_age = \"y\"\n", []string{`1:1: unknown key "foo"`, "3:9: prune.quota", "4:11: prune.min_age"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(Source{"p.toml", []byte(tc.src)})
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("want *Error, got %v", err)
			}
			if len(perr.Problems) != len(tc.want) {
				t.Fatalf("want %d problems, got:\n%v", len(tc.want), err)
			}
			for i, w := range tc.want {
				got := perr.Problems[i].String()
				if !strings.HasPrefix(got, "p.toml:") || !strings.Contains(got, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got, w)
				}
			}
		})
	}
}

func TestDropInsApplyInOrder(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "stowage.toml")
	write(t, main, "version = 1\n[prune]\nkeep_last = 3\nkeep = [\"a\"]\n")
	write(t, filepath.Join(dir, "stowage.toml.d", "20-b.toml"), "[prune]\nkeep_last = 5\n")
	write(t, filepath.Join(dir, "stowage.toml.d", "10-a.toml"), "[prune]\nkeep_last = 4\nkeep = [\"b\", \"c\"]\n")
	write(t, filepath.Join(dir, "stowage.toml.d", "ignored.conf"), "garbage")
	p, sources, err := Load(LoadOptions{Path: main})
	if err != nil {
		t.Fatal(err)
	}
	if p.Prune.KeepLast != 5 || strings.Join(p.Prune.Keep, ",") != "b,c" {
		t.Fatalf("drop-ins not applied in order: %+v", p.Prune)
	}
	want := []string{EmbeddedSource, main, filepath.Join(dir, "stowage.toml.d", "10-a.toml"), filepath.Join(dir, "stowage.toml.d", "20-b.toml")}
	if strings.Join(sources, "|") != strings.Join(want, "|") {
		t.Fatalf("sources = %v, want %v", sources, want)
	}
	// A problem in a drop-in names the drop-in; cross-file checks point at
	// the file that set the offending value last.
	write(t, filepath.Join(dir, "stowage.toml.d", "30-c.toml"), "[prune]\nhigh_watermark = \"50%\"\n")
	_, _, err = Load(LoadOptions{Path: main})
	if err == nil || !strings.Contains(err.Error(), "30-c.toml:2:18: prune.low_watermark (80%) must be below") {
		t.Fatalf("got %v", err)
	}
}

func TestLookup(t *testing.T) {
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	// No user file: the system path (absent here or not) or the embedded default.
	if _, err := Files(LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	user := filepath.Join(cfg, "stowage", "stowage.toml")
	write(t, user, "version = 1\n[refresh]\nmode = \"off\"\n")
	p, sources, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Refresh.Mode != RefreshOff || sources[1] != user {
		t.Fatalf("user policy not used: %v %v", p.Refresh.Mode, sources)
	}
	// System mode ignores the user's file.
	files, err := Files(LoadOptions{System: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasPrefix(f, cfg) {
			t.Fatalf("system lookup used %s", f)
		}
	}
	if _, _, err := Load(LoadOptions{Path: filepath.Join(cfg, "missing.toml")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing --policy file: %v", err)
	}
}

func TestAmountAndPercent(t *testing.T) {
	var a Amount
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "1KiB": 1024, "20GiB": 20 << 30, "1.5GB": 1500000000} {
		if err := a.UnmarshalText([]byte(in)); err != nil || a.Resolve(0) != want {
			t.Errorf("%s → %d, %v; want %d", in, a.Resolve(0), err, want)
		}
	}
	if err := a.UnmarshalText([]byte("25%")); err != nil || a.Resolve(1000) != 250 {
		t.Errorf("25%% of 1000 = %d, %v", a.Resolve(1000), err)
	}
	for _, bad := range []string{"", "-1", "abc", "101%", "%", "NaN%"} {
		if err := a.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: any input yields a policy or an *Error with positions inside
// the input, never a panic.
func FuzzParse(f *testing.F) {
	f.Add(defaultTOML)
	f.Add([]byte("[prune]\nkeep = [\"a\", \n \"[\"]\n"))
	f.Add([]byte("[[refresh.rule]]\nmatch='''x'''\nmode=\"pull\"\n"))
	f.Add([]byte("a.b.\"c\" = {x = [1,2]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(Source{"f.toml", data})
		if err == nil {
			if p == nil || p.Version != Version {
				t.Fatalf("nil or wrong-version policy without error")
			}
			return
		}
		var perr *Error
		if !errors.As(err, &perr) || len(perr.Problems) == 0 {
			t.Fatalf("error without problems: %v", err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, pr := range perr.Problems {
			if pr.File == "f.toml" && (pr.Line < 1 || pr.Line > lines+1) {
				t.Fatalf("position out of range: %v (input has %d lines)", pr, lines)
			}
		}
	})
}

func TestNotifyWants(t *testing.T) {
	for _, tc := range []struct {
		topics           []string
		job, kind, topic string
		want             bool
	}{
		{nil, "refresh", "drift_detected", "refresh:docker.io/library/alpine:3", true},
		{[]string{"verify"}, "refresh", "drift_detected", "refresh:docker.io/library/alpine:3", false},
		{[]string{"verify"}, "verify", "signature_rejected", "verify:docker.io/library/alpine:3", true},
		{[]string{"refresh"}, "refresh", "newer_version", "refresh-newer:docker.io/library/alpine:3", false},
		{[]string{"refresh-newer"}, "refresh", "newer_version", "refresh-newer:docker.io/library/alpine:3", true},
		{[]string{"refresh:docker.io/library/*"}, "refresh", "drift_detected", "refresh:docker.io/library/alpine:3", true},
		{[]string{"refresh:docker.io/library/*"}, "refresh", "drift_detected", "refresh:quay.io/x/y:1", false},
		{[]string{"prune-quota"}, "prune", "quota_exceeded", "prune-quota", true},
		{[]string{"volumes"}, "prune", "quota_exceeded", "prune-quota", false},
		// No topic: JOB/KIND, family JOB.
		{[]string{"prune"}, "prune", "job_failed", "", true},
		{[]string{"prune/job_failed"}, "prune", "job_failed", "", true},
		{[]string{"verify"}, "prune", "job_failed", "", false},
	} {
		if got := (Notify{Topics: tc.topics}).Wants(tc.job, tc.kind, tc.topic); got != tc.want {
			t.Errorf("Topics %q Wants(%s, %s, %q) = %v, want %v", tc.topics, tc.job, tc.kind, tc.topic, got, tc.want)
		}
	}
}
