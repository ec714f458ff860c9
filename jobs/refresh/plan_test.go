package refresh

import (
	"net/http"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
)

func TestPlan(t *testing.T) {
	imgs := []LocalImage{
		{ID: "a", Names: []string{"quay.io/org/app:1", "localhost/mine:latest", "docker.io/library/alpine@sha256:" + sha('1')}},
		{ID: "b", Names: []string{"docker.io/library/busybox:latest", "registry.example:5000/team/tool:v2"}},
	}
	p := policy.Refresh{Mode: policy.RefreshNotify, Rules: []policy.RefreshRule{
		{Match: "registry.example:5000/*/*", Mode: policy.RefreshOff},
		{Match: "quay.io/org/*", Mode: policy.RefreshPull},
	}}
	targets, skipped := Plan(imgs, p)
	got := map[string]policy.RefreshMode{}
	for _, tg := range targets {
		got[tg.Reference] = tg.Mode
	}
	want := map[string]policy.RefreshMode{
		"quay.io/org/app:1":                policy.RefreshPull,
		"docker.io/library/busybox:latest": policy.RefreshNotify,
	}
	if len(got) != len(want) {
		t.Fatalf("targets = %v, want %v", got, want)
	}
	for ref, m := range want {
		if got[ref] != m {
			t.Errorf("%s: mode %q, want %q", ref, got[ref], m)
		}
	}
	reasons := map[string]string{}
	for _, s := range skipped {
		reasons[s.Name] = s.Reason
	}
	for name, want := range map[string]string{
		"localhost/mine:latest":                       "local image (localhost/)",
		"docker.io/library/alpine@sha256:" + sha('1'): "pinned by digest",
		"registry.example:5000/team/tool:v2":          "refresh mode off",
	} {
		if reasons[name] != want {
			t.Errorf("skip reason for %s = %q, want %q", name, reasons[name], want)
		}
	}
}

func TestModeFor(t *testing.T) {
	p := policy.Refresh{Mode: policy.RefreshNotify, Rules: []policy.RefreshRule{
		{Match: "docker.io/library/*:latest", Mode: policy.RefreshPull},
		{Match: "docker.io/library/*", Mode: policy.RefreshOff},
	}}
	for ref, want := range map[string]policy.RefreshMode{
		"docker.io/library/alpine:latest": policy.RefreshPull, // first match wins
		"docker.io/library/alpine:3.19":   policy.RefreshOff,  // matched by name
		"docker.io/other/alpine:latest":   policy.RefreshNotify,
	} {
		if got := ModeFor(ref, p); got != want {
			t.Errorf("ModeFor(%s) = %q, want %q", ref, got, want)
		}
	}
	if got := ModeFor("x.io/a:1", policy.Refresh{}); got != policy.RefreshNotify {
		t.Errorf("empty policy mode = %q, want notify", got)
	}
}

// TestRuleForShortGlobs: a rule glob has the meaning of every reference
// glob (imageref.MatchGlob), so the familiar forms people write in
// prune.keep select references for refresh rules too.
func TestRuleForShortGlobs(t *testing.T) {
	p := policy.Refresh{Mode: policy.RefreshNotify, Newer: policy.NewerMinor, Rules: []policy.RefreshRule{
		{Match: "alpine:3.*", Mode: policy.RefreshPull, Newer: policy.NewerMajor, PullNewer: true},
		{Match: "nginx", Mode: policy.RefreshOff},
		{Match: "quay.io/org/*", Mode: policy.RefreshPull},
	}}
	for _, tc := range []struct {
		ref   string
		mode  policy.RefreshMode
		newer policy.NewerLevel
		pull  bool
	}{
		{"docker.io/library/alpine:3.19", policy.RefreshPull, policy.NewerMajor, true},
		{"docker.io/library/alpine:edge", policy.RefreshNotify, policy.NewerMinor, false},
		{"docker.io/library/nginx:1.25", policy.RefreshOff, policy.NewerMinor, false},
		{"quay.io/org/img:1", policy.RefreshPull, policy.NewerMinor, false},
		{"quay.io/other/nginx:1", policy.RefreshNotify, policy.NewerMinor, false},
	} {
		if got := ModeFor(tc.ref, p); got != tc.mode {
			t.Errorf("ModeFor(%s) = %q, want %q", tc.ref, got, tc.mode)
		}
		if got := NewerFor(tc.ref, p); got != tc.newer {
			t.Errorf("NewerFor(%s) = %q, want %q", tc.ref, got, tc.newer)
		}
		if got := PullNewerFor(tc.ref, p); got != tc.pull {
			t.Errorf("PullNewerFor(%s) = %v, want %v", tc.ref, got, tc.pull)
		}
	}
}

func sha(c byte) string {
	b := make([]byte, 64)
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func TestClassify(t *testing.T) {
	d := func(c byte) string { return "sha256:" + sha(c) }
	img := LocalImage{Digest: d('1'), Digests: []string{d('1'), d('L')}}
	for _, tc := range []struct {
		name       string
		remote     Remote
		wantStatus Status
		wantDigest string
	}{
		{"same manifest", Remote{Digest: d('1')}, StatusCurrent, d('1')},
		{"same list", Remote{Digest: d('L')}, StatusCurrent, d('L')},
		{"new manifest", Remote{Digest: d('2')}, StatusDrifted, d('2')},
		{"list changed for another platform", Remote{Digest: d('M'), Instance: d('1')}, StatusCurrent, d('1')},
		{"list changed for our platform", Remote{Digest: d('M'), Instance: d('3')}, StatusDrifted, d('3')},
	} {
		st, dg := Classify(img, tc.remote)
		if st != tc.wantStatus || dg != tc.wantDigest {
			t.Errorf("%s: got %s %s, want %s %s", tc.name, st, dg, tc.wantStatus, tc.wantDigest)
		}
	}
	if NeedsList(img, d('L'), true) {
		t.Error("a known list digest must not need a GET")
	}
	if !NeedsList(img, d('M'), true) {
		t.Error("an unknown list digest needs the list")
	}
	if NeedsList(img, d('2'), false) {
		t.Error("a single manifest never needs a GET")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", time.Second},
		{"3", 3 * time.Second},
		{"garbage", time.Second},
		{"99999999999999", 24 * time.Hour},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.in, now, time.Second); got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestNormalizeReference(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":             "docker.io/library/alpine:latest",
		"quay.io/a/b:1":      "quay.io/a/b:1",
		"127.0.0.1:5000/x/y": "127.0.0.1:5000/x/y:latest",
		"Not A Reference!":   "Not A Reference!",
	} {
		if got := NormalizeReference(in); got != want {
			t.Errorf("NormalizeReference(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "120", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d := retryAfter(s, now, time.Second); d < 0 {
			t.Fatalf("retryAfter(%q) = %s", s, d)
		}
	})
}
