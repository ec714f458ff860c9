package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// problems parses src as p.toml and returns the problems as strings.
func problems(t *testing.T, src string) []string {
	t.Helper()
	_, err := Parse(Source{"p.toml", []byte(src)})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("want *Error, got %v", err)
	}
	var out []string
	for _, p := range perr.Problems {
		out = append(out, p.String())
	}
	return out
}

// TestDeepNestingRefused (issue 12 item 8): 4,000 nested inline tables in a
// 16 KB policy took 720 MB in the decoder. Nesting deeper than MaxNesting
// is refused before decoding, at the bracket that goes too deep.
func TestDeepNestingRefused(t *testing.T) {
	const n = 4000
	for _, tc := range []struct {
		name, src, want string
	}{
		{"inline tables", "version = 1\nx = " + strings.Repeat("{a=", n) + "1" + strings.Repeat("}", n) + "\n",
			"p.toml:2:" + itoa(5+3*MaxNesting) + ": keys, arrays or inline tables nested deeper than 32 levels"},
		{"arrays", "version = 1\n# [[[[ in a comment\ns = \"[[[[{{{{\"\nx = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n",
			"p.toml:4:" + itoa(5+MaxNesting) + ": keys, arrays or inline tables nested deeper than 32 levels"},
		{"multi-line string first", "version = 1\nm = '''\n[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n'''\nx = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n",
			"p.toml:5:" + itoa(5+MaxNesting) + ": keys, arrays or inline tables nested deeper than 32 levels"},
		{"dotted key", "version = 1\n" + strings.Repeat("a.", n) + "a = 1\n",
			"p.toml:2:" + itoa(2*(MaxNesting+1)) + ": keys, arrays or inline tables nested deeper than 32 levels"},
		{"dotted table", "version = 1\n[" + strings.Repeat("a . ", n) + "a]\n",
			"p.toml:2:" + itoa(4*MaxNesting) + ": keys, arrays or inline tables nested deeper than 32 levels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.src)
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("problems = %q, want %q", got, tc.want)
			}
		})
	}
	// Brackets inside strings and comments, a float's and a time's dot are
	// left to the schema check (which refuses the unknown keys f and d).
	ok := "version = 1\nf = 1.5\nd = 1979-05-27T07:32:00.999Z\n# " + strings.Repeat("{", 40) + "\n[prune]\nkeep = [\"a" + strings.Repeat(`\\[`, 40) + "\", '" + strings.Repeat("{", 40) + "']\n"
	if _, err := Parse(Source{"p.toml", []byte(ok)}); err == nil || strings.Contains(err.Error(), "nested") {
		t.Fatalf("err = %v, want only the unknown keys f and d", err)
	}
}

// TestOversizedPolicyRefused: a policy file over MaxFileSize is refused,
// read from a file or handed over as a source.
func TestOversizedPolicyRefused(t *testing.T) {
	big := "version = 1\n" + strings.Repeat("# padding\n", MaxFileSize/10+1)
	if got := problems(t, big); len(got) != 1 || !strings.Contains(got[0], "too large") {
		t.Fatalf("problems = %q", got)
	}
	p := filepath.Join(t.TempDir(), "stowage.toml")
	write(t, p, big)
	if _, err := LoadSnapshot(LoadOptions{Path: p}); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want one naming %s", err, p)
	}
}

// TestUnknownTablePositions (issue 12 item 12): unknown tables used to be
// reported at 1:1 (or at the enclosing table), not where they are written.
func TestUnknownTablePositions(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"top table", "version = 1\n\n[bogus]\nx = 1\n", `p.toml:3:1: unknown key "bogus"`},
		{"empty top table", "version = 1\n\n  [bogus]\n", `p.toml:3:3: unknown key "bogus"`},
		{"sub table", "version = 1\n[prune]\nquota = \"1G\"\n\n[prune.extra]\nx = 1\n", `p.toml:5:1: unknown key "prune.extra"`},
		{"sub table without parent", "version = 1\n\n[prune.extra]\n", `p.toml:3:1: unknown key "prune.extra"`},
		{"implied table", "version = 1\n\n[bogus.sub]\nx = 1\n", `p.toml:3:1: unknown key "bogus"`},
		{"dotted key", "version = 1\nbogus.sub = 1\n", `p.toml:2:1: unknown key "bogus"`},
		{"array of tables", "version = 1\n\n[[bogus]]\nx = 1\n", `p.toml:3:1: unknown key "bogus"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := problems(t, tc.src)
			if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
				t.Fatalf("problems = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestUnreadableDropinDirIsAnError (issue 12 item 11, as root: a drop-in
// "directory" that is a file; the permission case is in cmd/stowage):
// a drop-in directory that cannot be listed used to be skipped.
func TestUnreadableDropinDirIsAnError(t *testing.T) {
	d := t.TempDir()
	p := filepath.Join(d, "stowage.toml")
	write(t, p, "version = 1\n")
	write(t, p+".d", "not a directory\n")
	if _, err := Files(LoadOptions{Path: p}); err == nil || !strings.Contains(err.Error(), p+".d") {
		t.Fatalf("err = %v, want one naming %s.d", err, p)
	}
	if err := os.Remove(p + ".d"); err != nil {
		t.Fatal(err)
	}
	if fs, err := Files(LoadOptions{Path: p}); err != nil || len(fs) != 1 {
		t.Fatalf("without drop-ins: %v, %v", fs, err)
	}
}
