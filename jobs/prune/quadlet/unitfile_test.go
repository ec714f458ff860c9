package quadlet

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseUnitLookup(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		group, key string
		want       string
		ok         bool
	}{
		{"plain", "[Container]\nImage=localhost/a:1\n", "Container", "Image", "localhost/a:1", true},
		{"blanks around =", "[Container]\n  Image \t=  localhost/a:1  \n", "Container", "Image", "localhost/a:1", true},
		{"last wins", "[Container]\nImage=a\nImage=b\n", "Container", "Image", "b", true},
		{"group reopened", "[Container]\nImage=a\n[Unit]\nX=1\n[Container]\nImage=b\n", "Container", "Image", "b", true},
		{"other group", "[Unit]\nImage=a\n", "Container", "Image", "", false},
		{"key is case sensitive", "[Container]\nimage=a\n", "Container", "Image", "", false},
		{"hash comment", "[Container]\n# Image=c\nImage=a\n#Image=d\n", "Container", "Image", "a", true},
		{"semicolon comment", "[Container]\nImage=a\n  ; Image=c\n", "Container", "Image", "a", true},
		{"hash inside value kept", "[Container]\nImage=a#b\n", "Container", "Image", "a#b", true},
		{"double quotes stripped", "[Container]\nImage=\"localhost/a:1\"\n", "Container", "Image", "localhost/a:1", true},
		{"quotes and trailing blanks", "[Container]\nImage=\"a\"   \n", "Container", "Image", "a", true},
		{"unmatched quote kept", "[Container]\nImage=\"a\n", "Container", "Image", "\"a", true},
		{"single quotes kept", "[Container]\nImage='a'\n", "Container", "Image", "'a'", true},
		{"inner quotes kept", "[Container]\nImage=\"a\" \"b\"\n", "Container", "Image", "a\" \"b", true},
		{"continuation", "[Container]\nImage=localhost/\\\nqfix/a:1\n", "Container", "Image", "localhost/qfix/a:1", true},
		{"continuation keeps inner blanks", "[Container]\nImage=a \\\n   b\n", "Container", "Image", "a b", true},
		{"comment inside continuation skipped", "[Container]\nImage=localhost/\\\n# x\n; y\n\nqfix/a:1\n", "Container", "Image", "localhost/qfix/a:1", true},
		{"three lines", "[Container]\nImage=a\\\nb\\\nc\n", "Container", "Image", "abc", true},
		{"backslash on last line", "[Container]\nImage=a\\", "Container", "Image", "a", true},
		{"lone backslash line", "[Container]\nImage=a\n\\", "Container", "Image", "a", true},
		{"no final newline", "[Container]\nImage=a", "Container", "Image", "a", true},
		{"CRLF", "[Container]\r\nImage=a\r\n", "Container", "Image", "a", true},
		{"group with trailing blanks", "[Container]  \nImage=a\n", "Container", "Image", "a", true},
		{"empty value is set", "[Container]\nImage=a\nImage=\n", "Container", "Image", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseUnit("x.container", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := u.Lookup(tc.group, tc.key)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Lookup = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParseUnitErrors(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"key before group", "Image=a\n", "does not start with a group"},
		{"not a key", "[Container]\nImage\n", "line 2"},
		{"empty key", "[Container]\n=a\n", "line 2"},
		{"empty group", "[]\n", "invalid group"},
		{"junk after group", "[Container] x\nImage=a\n", "line 1"},
		{"continued into junk", "[Container]\nfoo\\\nbar\n", "line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseUnit("x.container", tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLookupAll(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"several", "[Build]\nImageTag=a\nImageTag=b\n", []string{"a", "b"}},
		{"empty resets", "[Build]\nImageTag=a\nImageTag=\nImageTag=c\n", []string{"c"}},
		{"none", "[Build]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ParseUnit("x.build", tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got := u.LookupAll("Build", "ImageTag"); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("LookupAll = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a b  c", []string{"a", "b", "c"}},
		{`"a b" c`, []string{"a b", "c"}},
		{`'a b'c d`, []string{"a bc", "d"}},
		{`a\ b`, []string{"a b"}},
		{`--infra-image="localhost/x:1"`, []string{"--infra-image=localhost/x:1"}},
		{"", nil},
		{`""`, []string{""}},
	} {
		if got := splitWords(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestMergePrecedence: drop-ins are appended, so a later drop-in's value
// wins for single-value keys and adds to list keys.
func TestMergePrecedence(t *testing.T) {
	u, _ := ParseUnit("web.container", "[Container]\nImage=unit\n")
	d1, _ := ParseUnit("10.conf", "[Container]\nImage=ten\n")
	d2, _ := ParseUnit("20.conf", "[Unit]\nDescription=x\n")
	u.Merge(d1)
	u.Merge(d2)
	if got, _ := u.Lookup("Container", "Image"); got != "ten" {
		t.Fatalf("Image = %q, want ten", got)
	}
	b, _ := ParseUnit("b.build", "[Build]\nImageTag=a\n")
	bd, _ := ParseUnit("10.conf", "[Build]\nImageTag=b\n")
	b.Merge(bd)
	if got := b.LookupAll("Build", "ImageTag"); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("ImageTag = %q", got)
	}
}

func TestDropinDirs(t *testing.T) {
	for _, tc := range []struct {
		name string
		want []string
	}{
		{"web.container", []string{"web.container.d", "container.d"}},
		{"data.volume", []string{"data.volume.d", "volume.d"}},
		{"a-b-c.container", []string{"a-b-c.container.d", "a-b-.container.d", "a-.container.d", "container.d"}},
		{"tmpl@.container", []string{"tmpl@.container.d", "container.d"}},
		{"tmpl@x.container", []string{"tmpl@x.container.d", "tmpl@.container.d", "container.d"}},
		{"foo-bar@x-y.pod", []string{"foo-bar@x-y.pod.d", "foo-bar@.pod.d", "foo-@.pod.d", "foo-.pod.d", "pod.d"}},
		{"foo-bar@.build", []string{"foo-bar@.build.d", "foo-@.build.d", "foo-.build.d", "build.d"}},
	} {
		if got := DropinDirs(tc.name); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DropinDirs(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestTemplateParts(t *testing.T) {
	for _, tc := range []struct {
		name, base, inst string
		tmpl             bool
	}{
		{"web.container", "web", "", false},
		{"web@.container", "web", "", true},
		{"web@a.container", "web", "a", true},
		{"web@a@b.container", "web", "a@b", true},
	} {
		b, i, ok := TemplateParts(tc.name)
		if b != tc.base || i != tc.inst || ok != tc.tmpl {
			t.Errorf("TemplateParts(%q) = %q, %q, %v", tc.name, b, i, ok)
		}
	}
}

// FuzzParseUnit: the parser never panics, and a parsed value never holds
// a line break.
func FuzzParseUnit(f *testing.F) {
	f.Add("[Container]\nImage=a\\\nb\n")
	f.Add("[Container]\n# c\nImage=\"x\"\n")
	f.Add("[Container]\nImage=k.image\n[Unit]\nX=%h %n %i\n")
	f.Add("[Kube]\nYaml=/dev/zero\n")
	f.Add("[Container]\nImage=b.build\nPod=p.pod\nMount=type=image,source=i.image,target=/x\n")
	f.Fuzz(func(t *testing.T, data string) {
		u, err := ParseUnit("f.container", data)
		if err != nil {
			return
		}
		if v, ok := u.Lookup("Container", "Image"); ok && strings.Contains(v, "\n") {
			t.Fatalf("value with a newline: %q", v)
		}
		// Through the files: the unit as read by Load and merged with itself
		// as a drop-in, then resolved; errors are fine, panics are not.
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, "f.container"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(d, "f.container.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f.container.d", "10.conf"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = Scan([]string{d})
	})
}
