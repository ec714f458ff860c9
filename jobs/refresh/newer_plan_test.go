package refresh

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"go.podman.io/image/v5/docker/reference"

	"github.com/stowage/stowage/policy"
)

func TestNewerParseVersion(t *testing.T) {
	for _, c := range []struct {
		tag   string
		ok    bool
		parts []int
		v     bool
		pre   string
		rest  string
	}{
		{"1.25", true, []int{1, 25}, false, "", ""},
		{"v2.1.3", true, []int{2, 1, 3}, true, "", ""},
		{"1.25.3-alpine", true, []int{1, 25, 3}, false, "", "-alpine"},
		{"3.19", true, []int{3, 19}, false, "", ""},
		{"3", true, []int{3}, false, "", ""},
		{"1.26.0-rc1-alpine", true, []int{1, 26, 0}, false, "rc", "-alpine"},
		{"2.0-beta", true, []int{2, 0}, false, "beta", ""},
		{"1.25.3-alpine3.19", true, []int{1, 25, 3}, false, "", "-alpine3.19"},
		{"1.0-developer", true, []int{1, 0}, false, "", "-developer"},
		{"1.0-rcs", true, []int{1, 0}, false, "", "-rcs"},
		{"1.0-rc.2", true, []int{1, 0}, false, "rc", ""},
		{"2.0.0-preview3-bookworm", true, []int{2, 0, 0}, false, "preview", "-bookworm"},
		{"2.0.0-pre", true, []int{2, 0, 0}, false, "pre", ""},
		{"1.0_beta2", true, []int{1, 0}, false, "beta", ""},
		{"latest", false, nil, false, "", ""},
		{"stable-alpine", false, nil, false, "", ""},
		{"1.2.3.4", false, nil, false, "", ""},
		{"20240101", false, nil, false, "", ""},
		{"v", false, nil, false, "", ""},
		{"1.", false, nil, false, "", ""},
		{"sha256-abc", false, nil, false, "", ""},
		{"99999999999.1", false, nil, false, "", ""},
	} {
		v, ok := ParseVersion(c.tag)
		if ok != c.ok {
			t.Errorf("%q: ok %t, want %t", c.tag, ok, c.ok)
			continue
		}
		if !ok {
			continue
		}
		if !slices.Equal(v.Parts, c.parts) || v.V != c.v || v.Pre != c.pre || v.Rest != c.rest {
			t.Errorf("%q: %+v, want parts %v v %t pre %q rest %q", c.tag, v, c.parts, c.v, c.pre, c.rest)
		}
	}
}

func TestNewerTrackAndLevels(t *testing.T) {
	tags := []string{
		"1.24", "1.25", "1.26", "1.27", "2.0", "2.1", "1.25.3", "1.25.9", "1.26.1", "1.28-alpine",
		"1.29-rc1", "3.0-beta", "v1.30", "latest", "1.25.10", "2.0.0", "1.26.0-rc1", "1.26.0-rc2", "1.26.0",
		"1.25.4-alpine", "1.25.5-alpine", "1.26.0-alpine", "1.25.6-rc1-alpine", "7",
	}
	for _, c := range []struct {
		local string
		level policy.NewerLevel
		want  string // "" = none
	}{
		// Two parts: no patch, minor within the major, major anything.
		{"1.25", policy.NewerPatch, ""},
		{"1.25", policy.NewerMinor, "1.27"},
		{"1.25", policy.NewerMajor, "2.1"},
		{"1.25", policy.NewerOff, ""},
		// Three parts, a different track from two parts.
		{"1.25.3", policy.NewerPatch, "1.25.10"}, // numeric, not lexical
		{"1.25.3", policy.NewerMinor, "1.26.1"},
		{"1.25.3", policy.NewerMajor, "2.0.0"},
		// Suffix: its own track.
		{"1.25.4-alpine", policy.NewerPatch, "1.25.5-alpine"},
		{"1.25.4-alpine", policy.NewerMinor, "1.26.0-alpine"},
		// Pre-releases: never for a release ...
		{"1.26", policy.NewerMajor, "2.1"},
		// ... but for a pre-release of the same track, releases and later pre-releases.
		{"1.26.0-rc1", policy.NewerPatch, "1.26.1"},
		{"1.26.0-rc1", policy.NewerMinor, "1.26.1"},
		{"2.0-beta", policy.NewerMinor, "2.1"},
		// v prefix: its own track.
		{"v1.29", policy.NewerMinor, "v1.30"},
		{"v1.30", policy.NewerMajor, ""},
		// One part: only major.
		{"6", policy.NewerMinor, ""},
		{"6", policy.NewerMajor, "7"},
		// Already the newest.
		{"2.1", policy.NewerMajor, ""},
	} {
		v, ok := ParseVersion(c.local)
		if !ok {
			t.Fatalf("%q not a version", c.local)
		}
		got, _ := Newest(v, tags, c.level)
		if got != c.want {
			t.Errorf("%s at %s: newest %q, want %q", c.local, c.level, got, c.want)
		}
	}
}

func TestNewerCompare(t *testing.T) {
	order := []string{"1.0.0-dev", "1.0.0-alpha", "1.0.0-alpha2", "1.0.0-beta", "1.0.0-rc1", "1.0.0-rc10", "1.0.0", "1.0.1", "1.10.0"}
	for i := 1; i < len(order); i++ {
		a, _ := ParseVersion(order[i-1])
		b, _ := ParseVersion(order[i])
		if a.Compare(b) >= 0 || b.Compare(a) <= 0 {
			t.Errorf("%s should be below %s", order[i-1], order[i])
		}
	}
}

func TestNewerNextLink(t *testing.T) {
	for _, c := range []struct{ header, want string }{
		{`</v2/app/tags/list?n=2&last=b>; rel="next"`, "/v2/app/tags/list?n=2&last=b"},
		{`<https://r.example/v2/app/tags/list?last=b&n=2>; rel=next`, "https://r.example/v2/app/tags/list?last=b&n=2"},
		{`</a>; rel="prev", </b>; rel="next"`, "/b"},
		{`</a,b>; title="x, y"; rel="next"`, "/a,b"},
		{`</a>; rel="prev next"`, "/a"},
		{`</a>; rel="prev"`, ""},
		{``, ""},
		{`garbage`, ""},
		{`<unterminated; rel="next"`, ""},
	} {
		if got := NextLink(c.header); got != c.want {
			t.Errorf("NextLink(%q) = %q, want %q", c.header, got, c.want)
		}
	}
}

func TestNewerNextPage(t *testing.T) {
	cur, _ := url.Parse("http://127.0.0.1:5000/v2/app/tags/list?n=2")
	for _, c := range []struct {
		name string
		link string
		page []string
		want string // "" = done; "ERR" = error
	}{
		{"link", `</v2/app/tags/list?n=2&last=b>; rel="next"`, []string{"a", "b"}, "http://127.0.0.1:5000/v2/app/tags/list?n=2&last=b"},
		{"full page without link", "", []string{"a", "b"}, "http://127.0.0.1:5000/v2/app/tags/list?last=b&n=2"},
		{"short page", "", []string{"a"}, ""},
		{"registry ignored n", "", []string{"a", "b", "c"}, ""},
		{"empty", "", nil, ""},
		{"link to another host", `<http://evil.example/v2/app/tags/list>; rel="next"`, []string{"a", "b"}, "ERR"},
	} {
		u, err := NextPage(cur, c.link, c.page, 2)
		got := ""
		switch {
		case err != nil:
			got = "ERR"
		case u != nil:
			got = u.String()
		}
		if got != c.want {
			t.Errorf("%s: %q (%v), want %q", c.name, got, err, c.want)
		}
	}
}

func target(t *testing.T, ref string) Target {
	t.Helper()
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		t.Fatal(err)
	}
	nt := named.(reference.NamedTagged)
	return Target{Reference: nt.String(), Named: nt, Image: LocalImage{ID: "id-" + nt.Tag()}, Mode: policy.RefreshNotify}
}

func TestNewerPlan(t *testing.T) {
	targets := []Target{
		target(t, "r.example/app:1.25"), target(t, "r.example/app:1.25.3-alpine"), target(t, "r.example/app:latest"),
		target(t, "r.example/db:16"), target(t, "r.example/db:15-windows"),
		target(t, "r.example/pinned/x:2.0"), target(t, "other.example/tool:v3.1"),
		// Can have no newer minor: one part; listed for nothing otherwise.
		target(t, "r.example/one:7"),
	}
	p := policy.Refresh{
		Newer:        policy.NewerMinor,
		NewerExclude: []string{"*-windows*"},
		Rules: []policy.RefreshRule{
			{Match: "r.example/pinned/*", Mode: policy.RefreshNotify, Newer: policy.NewerOff},
			{Match: "r.example/db", Mode: policy.RefreshNotify, Newer: policy.NewerMajor},
			{Match: "other.example/*", Mode: policy.RefreshPull}, // no newer: keeps refresh.newer
		},
	}
	ls := PlanNewer(targets, p)
	type got struct {
		repo   string
		locals []string
	}
	var g []got
	for _, l := range ls {
		var locals []string
		for _, lv := range l.Locals {
			locals = append(locals, lv.Version.Tag+"@"+string(lv.Level))
		}
		g = append(g, got{l.Repo, locals})
	}
	want := []got{
		{"other.example/tool", []string{"v3.1@minor"}},
		{"r.example/app", []string{"1.25@minor", "1.25.3-alpine@minor"}},
		{"r.example/db", []string{"16@major"}},
	}
	if len(g) != len(want) {
		t.Fatalf("plan %+v, want %+v", g, want)
	}
	for i := range want {
		if g[i].repo != want[i].repo || !slices.Equal(g[i].locals, want[i].locals) {
			t.Errorf("listing %d: %+v, want %+v", i, g[i], want[i])
		}
	}
	// newer_tags narrows local and remote tags alike.
	p.NewerTags = []string{"*-alpine"}
	ls = PlanNewer(targets, p)
	if len(ls) != 1 || ls[0].Repo != "r.example/app" || len(ls[0].Locals) != 1 {
		t.Fatalf("with newer_tags: %+v", ls)
	}
	res := Choose(ls[0], []string{"1.26.0-alpine", "1.25.9-alpine", "1.27.0-alpine-windows"}, policy.Refresh{NewerTags: p.NewerTags, NewerExclude: p.NewerExclude})
	if len(res) != 1 || res[0].Newer != "1.26.0-alpine" || res[0].NewerRef != "r.example/app:1.26.0-alpine" {
		t.Errorf("choose: %+v", res)
	}
	// Off by default (an empty level).
	if ls := PlanNewer(targets, policy.Refresh{}); len(ls) != 0 {
		t.Errorf("unset newer planned %+v", ls)
	}
}

func TestNewerFitBudget(t *testing.T) {
	mk := func(refs ...string) []Listing {
		var ls []Listing
		for _, r := range refs {
			ls = append(ls, PlanNewer([]Target{target(t, r)}, policy.Refresh{Newer: policy.NewerMinor})...)
		}
		return ls
	}
	ls := mk("a.example/x:1.0", "a.example/y:1.0", "a.example/z:1.0", "b.example/x:1.0", "c.example/x:1.0")
	left := map[string]int{"a.example": 2, "b.example": 0, "c.example": -1}
	keep, drop := FitBudget(ls, func(r string) int { return left[r] })
	var k, d []string
	for _, l := range keep {
		k = append(k, l.Repo)
	}
	for _, l := range drop {
		d = append(d, l.Repo)
	}
	if !slices.Equal(k, []string{"a.example/x", "a.example/y", "c.example/x"}) || !slices.Equal(d, []string{"a.example/z", "b.example/x"}) {
		t.Errorf("keep %v drop %v", k, d)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.25", "v2.1.3", "1.25.3-alpine", "1.26.0-rc1-alpine", "latest", "1.0-rc.2", "9999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := ParseVersion(s)
		if !ok {
			return
		}
		if len(v.Parts) < 1 || len(v.Parts) > 3 || v.Tag != s {
			t.Fatalf("%q: %+v", s, v)
		}
		if v.Compare(v) != 0 || v.Allows(v, policy.NewerMajor) {
			t.Fatalf("%q: not equal to itself", s)
		}
	})
}

func FuzzNextLink(f *testing.F) {
	for _, s := range []string{`</a>; rel="next"`, `<`, `>;rel=next,<`, `"<a>"; rel=next`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cur, _ := url.Parse("http://127.0.0.1:5000/v2/a/tags/list?n=2")
		_ = NextLink(s)
		_, _ = NextPage(cur, s, []string{"a", "b"}, 2)
	})
}

func TestNewerOrderListings(t *testing.T) {
	ls := PlanNewer([]Target{
		target(t, "r.example/a:1.0"), target(t, "r.example/a:2.0"),
		target(t, "r.example/b:1.0"), target(t, "r.example/c:1.0"), target(t, "r.example/d:1.0"),
	}, policy.Refresh{Newer: policy.NewerMinor})
	day := func(d int) time.Time { return time.Date(2026, 12, d, 0, 0, 0, 0, time.UTC) }
	listed := map[string]time.Time{
		"r.example/a:1.0": day(5), "r.example/a:2.0": day(1), // a's oldest reference counts
		"r.example/b:1.0": day(3),
		"r.example/c:1.0": day(2),
		// d never listed
	}
	var got []string
	for _, l := range OrderListings(ls, listed) {
		got = append(got, l.Repo)
	}
	if want := []string{"r.example/d", "r.example/a", "r.example/c", "r.example/b"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
	if ls[0].Repo != "r.example/a" {
		t.Error("OrderListings changed its input")
	}
}
