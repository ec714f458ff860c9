package verify_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// TestActions runs untag and remove against images with several names and
// with containers, under a policy (given by [verify] policy_json) that
// trusts only localhost/good.
func TestActions(t *testing.T) {
	h := newHarness(t, "vfs", "")
	trust := t.TempDir() + "/policy.json"
	testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{
		"localhost/good": {testenv.InsecureAcceptAnything()},
	}}.Write(t, trust)
	h.toml = writeTOML(t, fmt.Sprintf("[verify]\npolicy_json = %q\n", trust))

	img := map[string]string{}
	for _, n := range []string{"a", "b", "c", "e", "f", "g"} {
		img[n] = h.p.Import(t, "localhost/bad/"+n+":1", map[string]string{"f": n})
	}
	h.p.Run(t, "tag", img["a"], "localhost/good/a:1") // a: one name passes
	h.p.Run(t, "tag", img["b"], "localhost/bad/b:2")  // b: two failing names + container
	h.p.Run(t, "create", "--name", "stwg-verify-b", img["b"], "/f")
	h.p.Run(t, "tag", img["e"], "localhost/good/e:1") // e, f, g: for remove mode
	h.p.Run(t, "create", "--name", "stwg-verify-g", img["g"], "/f")

	names := func() map[string]string { // name → image ID
		m := map[string]string{}
		for _, line := range strings.Split(h.p.Run(t, "images", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				m[f[1]] = strings.TrimPrefix(f[0], "sha256:")
			}
		}
		return m
	}
	before := names()

	// Dry run: planned, nothing touched.
	rep := h.verify(t, "--mode", "untag", "--dry-run")
	if len(rep.Actions) == 0 {
		t.Fatal("dry run planned nothing")
	}
	for _, a := range rep.Actions {
		if a.Applied {
			t.Errorf("dry run applied %+v", a)
		}
	}
	if got := names(); len(got) != len(before) {
		t.Fatalf("dry run changed the store: %v → %v", before, got)
	}

	rep = h.verify(t, "--mode", "untag")
	acts := map[string]verify.Action{}
	for _, a := range rep.Actions {
		acts[a.ImageID] = a
	}
	after := names()
	// a: failing name gone, image kept under the passing name.
	if _, ok := after["localhost/bad/a:1"]; ok || after["localhost/good/a:1"] != img["a"] {
		t.Errorf("a: names after untag: %v", after)
	}
	if a := acts[img["a"]]; a.Kind != verify.ActionUntag || !a.Applied {
		t.Errorf("a: action %+v", a)
	}
	// b: both names gone, image kept for its container.
	if a := acts[img["b"]]; a.Kind != verify.ActionUntag || !a.Applied || len(a.Names) != 2 {
		t.Errorf("b: action %+v", a)
	}
	if out := h.p.Run(t, "image", "exists", img["b"]); out != "" {
		t.Errorf("b: %s", out)
	}
	if out := h.p.Run(t, "ps", "-a", "--filter", "name=stwg-verify-b", "--format", "{{.ImageID}}"); !strings.HasPrefix(img["b"], out) || out == "" {
		t.Errorf("b's container lost its image: %q", out)
	}
	// c (and f, no container, all names fail): removed.
	for _, n := range []string{"c", "f"} {
		if a := acts[img[n]]; a.Kind != verify.ActionRemove || !a.Applied {
			t.Errorf("%s: action %+v", n, a)
		}
		if _, err := testenv.RunErr(h.p.Env, "podman", append(h.p.Flags(), "image", "exists", img[n])...); err == nil {
			t.Errorf("%s: image still there", n)
		}
	}
	// g: container → untagged only; e: bad name untagged.
	if a := acts[img["g"]]; a.Kind != verify.ActionUntag || !a.Applied {
		t.Errorf("g: action %+v", a)
	}
	sameStrings(t, "untagged events", eventRefs(rep, report.EventImageUntagged),
		[]string{"localhost/bad/a:1", "localhost/bad/b:1", "localhost/bad/b:2", "localhost/bad/e:1", "localhost/bad/g:1"})
	sameStrings(t, "removed events", eventImages(rep, report.EventImageRemoved), []string{img["c"], img["f"]})

	// remove mode, on fresh failing names.
	h.p.Run(t, "tag", img["e"], "localhost/bad/e:2")                      // e: good/e passes → kept
	h.p.Run(t, "tag", img["g"], "localhost/bad/g:2")                      // g: container → kept
	h2 := h.p.Import(t, "localhost/bad/h:1", map[string]string{"f": "h"}) // h: removed
	h.p.Run(t, "tag", h2, "localhost/bad/h:2")                            // several failing names
	rep = h.verify(t, "--mode", "remove")
	acts = map[string]verify.Action{}
	for _, a := range rep.Actions {
		acts[a.ImageID] = a
	}
	if a := acts[h2]; a.Kind != verify.ActionRemove || !a.Applied || len(a.Names) != 2 {
		t.Errorf("h: action %+v", a)
	}
	if a := acts[img["e"]]; !a.Skipped || !strings.Contains(a.Reason, "pass") {
		t.Errorf("e: action %+v", a)
	}
	if a := acts[img["g"]]; !a.Skipped || !strings.Contains(a.Reason, "container") {
		t.Errorf("g: action %+v", a)
	}
	after = names()
	if after["localhost/bad/e:2"] != img["e"] || after["localhost/bad/g:2"] != img["g"] {
		t.Errorf("remove mode touched kept images: %v", after)
	}
	if _, ok := after["localhost/bad/h:1"]; ok {
		t.Errorf("h not removed: %v", after)
	}
	sameStrings(t, "removed events", eventImages(rep, report.EventImageRemoved), []string{h2})
	if rep.Metrics["removed"] != 1 {
		t.Errorf("metrics = %v", rep.Metrics)
	}
}

func writeTOML(t *testing.T, body string) string {
	t.Helper()
	p := t.TempDir() + "/stowage.toml"
	testenv.Run(t, nil, "sh", "-c", fmt.Sprintf("cat > %s <<'EOF'\nversion = 1\n%sEOF\n", p, body))
	return p
}

func eventImages(rep verify.Report, kind string) []string {
	var out []string
	for _, e := range rep.Events {
		if e.Kind == kind {
			out = append(out, e.Image)
		}
	}
	sort.Strings(out)
	return out
}
