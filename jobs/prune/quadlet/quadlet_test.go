package quadlet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/policy/regfile"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureLayout points a Layout at testdata/fixture, which mirrors /run,
// /etc and /usr/share containers/systemd plus a user's config and runtime
// directories.
func fixtureLayout(t *testing.T) Layout {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("testdata", "fixture"))
	if err != nil {
		t.Fatal(err)
	}
	return Layout{
		Temp:       filepath.Join(root, "run/containers/systemd"),
		Admin:      filepath.Join(root, "etc/containers/systemd"),
		Distro:     filepath.Join(root, "usr/share/containers/systemd"),
		RuntimeDir: filepath.Join(root, "runtime"),
		ConfigDir:  filepath.Join(root, "home/.config"),
	}
}

func refsOf(t *testing.T, r *Refs) []string {
	t.Helper()
	var out []string
	for _, i := range r.Images() {
		out = append(out, i.Ref)
	}
	return out
}

// TestFixtureSystem: every form in the fixture, as podman 5.4.2, 5.8.2
// and 6.0-dev's generators read them (compared by hand with
// `quadlet -dryrun` in a mount namespace over the fixture; see
// TestMatchesGenerator for the automated part).
func TestFixtureSystem(t *testing.T) {
	r, err := Scan(fixtureLayout(t).SystemDirs())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"localhost/qfix/app:1",                // plain, comments ignored
		"localhost/qfix/built:1",              // .build ImageTag=, also via Image=built.build
		"localhost/qfix/built:latest",         // second ImageTag=
		"localhost/qfix/built:typewide",       // build.d/ type-wide drop-in
		"localhost/qfix/continued:1",          // line continuation with a comment inside
		"localhost/qfix/cross:usr-dropin",     // drop-in from another search path
		"localhost/qfix/db:prefix",            // db-.container.d/ dash-prefix drop-in
		"localhost/qfix/db:replica",           // same-named drop-in in db-replica.container.d/ hides the prefix one
		"localhost/qfix/distro:1",             // /usr/share/containers/systemd
		"localhost/qfix/dup:etc",              // first file of a name wins (root before sub/ and /usr/share)
		"localhost/qfix/early:run",            // /run before /etc
		"localhost/qfix/infra:1",              // .pod PodmanArgs=--infra-image=
		"localhost/qfix/kube-deploy:1",        // .kube YAML, second document
		"localhost/qfix/kube-init:1",          // initContainers
		"localhost/qfix/kube-main:1",          // quoted YAML value
		"localhost/qfix/mounted:1",            // Mount=type=image
		"localhost/qfix/nested:1",             // subdirectory
		"localhost/qfix/pulled-tag:2",         // .image ImageTag=, and what Image=tagged.image resolves to
		"localhost/qfix/pulled:1",             // .image Image=, and Image=pulled.image
		"localhost/qfix/pulled:2",             // .image Image= with an ImageTag=
		"localhost/qfix/quoted:1",             // quoted value
		"localhost/qfix/tmpl:b",               // instance drop-in beats the template's
		"localhost/qfix/tmpl:template-dropin", // x@.container.d/ applies to the template and its instances
		"localhost/qfix/u-distro-uid:1000",    // podman reads /usr/share/containers/systemd/users/** for root too
		"localhost/qfix/u-distro:1",
		"localhost/qfix/vol:1",  // .volume Driver=image
		"localhost/qfix/web:20", // drop-ins in lexical order, README ignored
	}
	if got := refsOf(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("system refs:\n got %q\nwant %q", got, want)
	}
}

func TestFixtureUser(t *testing.T) {
	r, err := Scan(fixtureLayout(t).UserDirs(1000))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"localhost/qfix/u-all:1",           // /etc/containers/systemd/users
		"localhost/qfix/u-app:runtime",     // $XDG_RUNTIME_DIR before ~/.config
		"localhost/qfix/u-common:1",        // users/<non-numeric>/
		"localhost/qfix/u-config:dropin",   // ~/.config with a drop-in
		"localhost/qfix/u-distro-uid:1000", // podman 6: /usr/share/containers/systemd/users/UID
		"localhost/qfix/u-distro:1",        // podman 6: /usr/share/containers/systemd/users
		"localhost/qfix/u-uid:1000",        // users/UID (not users/2000)
	}
	if got := refsOf(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("user refs:\n got %q\nwant %q", got, want)
	}
}

func TestSearchPathOrder(t *testing.T) {
	l := fixtureLayout(t)
	dirs := l.SystemDirs()
	rel := make([]string, len(dirs))
	root := filepath.Dir(filepath.Dir(filepath.Dir(l.Temp)))
	for i, d := range dirs {
		rel[i], _ = filepath.Rel(root, d)
	}
	want := []string{
		"run/containers/systemd",
		"etc/containers/systemd",
		"etc/containers/systemd/kube",
		"etc/containers/systemd/sub", // extra.d and *.container.d are not search paths; users/ is skipped
		"usr/share/containers/systemd",
		"usr/share/containers/systemd/users",
		"usr/share/containers/systemd/users/1000",
	}
	if !reflect.DeepEqual(rel, want) {
		t.Errorf("system dirs = %q, want %q", rel, want)
	}
	dirs = l.UserDirs(1000)
	rel = rel[:0]
	for _, d := range dirs {
		r, _ := filepath.Rel(root, d)
		rel = append(rel, r)
	}
	want = []string{
		"runtime/containers/systemd",
		"home/.config/containers/systemd",
		"etc/containers/systemd/users",
		"etc/containers/systemd/users/common", // not 1000 or 2000 here
		"etc/containers/systemd/users/1000",
		"usr/share/containers/systemd/users",
		"usr/share/containers/systemd/users/1000",
	}
	if !reflect.DeepEqual(rel, want) {
		t.Errorf("user dirs = %q, want %q", rel, want)
	}
}

func TestScanMatch(t *testing.T) {
	user, sys := t.TempDir(), t.TempDir()
	write(t, filepath.Join(user, "web.container"), "[Unit]\nDescription=x\n[Container]\n# Image=commented.example/no:1\nImage=quay.io/org/web:2\nExec=/bin/true\n")
	write(t, filepath.Join(user, "sub", "db.container"), "[Container]\nImage=postgres\n")
	write(t, filepath.Join(sys, "base.image"), "[Image]\nImage=registry.example:5000/base/img:7\n")
	write(t, filepath.Join(sys, "uses.container"), "[Container]\nImage=base.image\n")
	write(t, filepath.Join(sys, "pod.kube"), "[Kube]\nYaml=pod.yaml\n")
	write(t, filepath.Join(sys, "pod.yaml"), "spec:\n  containers:\n  - name: a\n    image: localhost/kube-a:1\n  - image: \"docker.io/library/redis:7\"\n")
	write(t, filepath.Join(sys, "ignored.network"), "[Network]\nImage=nope:1\n")
	write(t, filepath.Join(sys, "t@.container"), "[Container]\nImage=localhost/tmpl:%i\n")
	write(t, filepath.Join(sys, "t@v3.container"), "[Container]\nImage=localhost/inst:%i\n")
	write(t, filepath.Join(sys, "id.container"), "[Container]\nImage=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	r, err := Scan(ExpandDirs([]string{user, sys, filepath.Join(sys, "missing")}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id    string
		names []string
		want  bool
	}{
		{"x", []string{"quay.io/org/web:2"}, true},
		{"x", []string{"quay.io/org/web:3"}, false},
		{"x", []string{"docker.io/library/postgres:latest"}, true},
		{"x", []string{"registry.example/library/postgres:latest"}, true}, // short name: any registry
		{"x", []string{"registry.example:5000/base/img:7"}, true},
		{"x", []string{"localhost/kube-a:1"}, true},
		{"x", []string{"docker.io/library/redis:7"}, true},
		{"x", []string{"docker.io/library/nope:1"}, false},
		{"x", []string{"commented.example/no:1"}, false},
		{"x", []string{"localhost/tmpl:anything"}, true}, // template %i: every tag
		{"x", []string{"localhost/tmplx:1"}, false},
		{"x", []string{"localhost/inst:v3"}, true}, // instance: %i expanded
		{"x", []string{"localhost/inst:v4"}, false},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", nil, true},
	} {
		if got := r.Match(tc.id, tc.names) != ""; got != tc.want {
			t.Errorf("Match(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

// TestScanFailsClosed: whatever cannot be read or resolved is an error,
// so prune removes nothing.
func TestScanFailsClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
		is    error
	}{
		{"missing .image unit", map[string]string{"a.container": "[Container]\nImage=gone.image\n"}, "gone.image", ErrUnresolved},
		{"missing .build unit", map[string]string{"a.volume": "[Volume]\nDriver=image\nImage=gone.build\n"}, "gone.build", ErrUnresolved},
		{".build without ImageTag", map[string]string{"b.build": "[Build]\nFile=x\n", "a.container": "[Container]\nImage=b.build\n"}, "names no image", ErrUnresolved},
		{"missing yaml", map[string]string{"k.kube": "[Kube]\nYaml=/nonexistent/k.yaml\n"}, "k.yaml", os.ErrNotExist},
		{"malformed yaml", map[string]string{"k.kube": "[Kube]\nYaml=k.yaml\n", "k.yaml": "spec: [unclosed\n"}, "kube yaml", nil},
		{"syntax error", map[string]string{"a.container": "[Container]\nImage localhost/a:1\n"}, "line 2", nil},
		{"syntax error in drop-in", map[string]string{"a.container": "[Container]\nImage=localhost/a:1\n", "a.container.d/x.conf": "junk\n"}, "x.conf", nil},
		{"directory named like a unit", map[string]string{"d.container/x": ""}, "d.container", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			for p, c := range tc.files {
				write(t, filepath.Join(d, p), c)
			}
			_, err := Scan(ExpandDirs([]string{d}))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.is)
			}
		})
	}
}

func TestScanUnreadableIsAnError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads anything (TestScanFailsClosed covers the other cases)")
	}
	d := t.TempDir()
	write(t, filepath.Join(d, "x.container"), "[Container]\nImage=a\n")
	_ = os.Chmod(filepath.Join(d, "x.container"), 0)
	if _, err := Scan([]string{d}); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("unreadable unit: err = %v", err)
	}
	write(t, filepath.Join(d, "locked", "y.container"), "[Container]\nImage=b\n")
	_ = os.Chmod(filepath.Join(d, "locked"), 0)
	defer os.Chmod(filepath.Join(d, "locked"), 0o755)
	if _, err := Scan(ExpandDirs([]string{filepath.Join(d, "locked")})); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("unreadable directory: err = %v", err)
	}
}

func TestImagesPure(t *testing.T) {
	parse := func(name, data string) *UnitFile {
		u, err := ParseUnit(name, data)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	units := []*UnitFile{
		parse("k.kube", "[Kube]\nYaml=a.yaml \"b c.yaml\"\nYaml=d.yaml\n"),
		parse("p.pod", "[Pod]\nPodmanArgs=--infra-image localhost/infra:2 --name x\n"),
		parse("b.build", "[Build]\nImageTag=localhost/b:1\n"),
		parse("v.volume", "[Volume]\nDriver=local\nImage=localhost/not:1\n"),
		parse("m.container", "[Container]\nImage=b.build\nMount=type=bind,source=/x,destination=/y\nMount=\"type=image,src=localhost/m:1,dst=/z\"\n"),
	}
	read := func(p string) ([]byte, error) {
		return []byte("image: localhost/" + strings.TrimSuffix(p, ".yaml") + ":1\n"), nil
	}
	uses, err := Images(units, read)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range uses {
		got = append(got, u.Unit+" "+u.Image)
	}
	want := []string{
		"k.kube localhost/a:1", "k.kube localhost/b c:1", "k.kube localhost/d:1",
		"p.pod localhost/infra:2",
		"b.build localhost/b:1",
		"m.container localhost/b:1", "m.container localhost/m:1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("uses:\n got %q\nwant %q", got, want)
	}
}

func TestKubeImages(t *testing.T) {
	got, err := KubeImages([]byte("a:\n  image: x:1\n---\nb:\n- image: 'y:2'\n  c: {image: z:3}\n---\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"x:1", "y:2", "z:3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("KubeImages = %q, want %q", got, want)
	}
}

// TestMatchesGenerator compares Scan with podman's own generator over the
// fixture's /etc tree (QUADLET_UNIT_DIRS, which podman walks as
// ExpandDirs does). It runs where a generator is installed, or at
// $QUADLET_GENERATOR. Images only a .kube YAML names are not in the
// generated units and are left out of the comparison.
func TestMatchesGenerator(t *testing.T) {
	gen := os.Getenv("QUADLET_GENERATOR")
	if gen == "" {
		gen = "/usr/libexec/podman/quadlet"
	}
	if _, err := os.Stat(gen); err != nil {
		t.Skipf("no quadlet generator: %v", err)
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "fixture", "etc", "containers", "systemd"))
	cmd := exec.Command(gen, "-dryrun")
	cmd.Env = append(os.Environ(), "QUADLET_UNIT_DIRS="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -dryrun: %v", gen, err)
	}
	re := regexp.MustCompile(`localhost/qfix/[^ ",]+`)
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "ExecStart=") || strings.HasPrefix(line, "ExecStartPre=") {
			for _, m := range re.FindAllString(line, -1) {
				seen[m] = true
			}
		}
	}
	var want []string
	for m := range seen {
		want = append(want, m)
	}
	sort.Strings(want)
	r, err := Scan(ExpandDirs([]string{dir}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ref := range refsOf(t, r) {
		if !strings.HasPrefix(ref, "localhost/qfix/kube-") {
			got = append(got, ref)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stowage:\n %q\ngenerator:\n %q", got, want)
	}
}

func TestKubeYamlInHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	write(t, filepath.Join(home, "k", "p.yaml"), "spec:\n  containers:\n  - image: localhost/qfix/home:1\n")
	d := t.TempDir()
	write(t, filepath.Join(d, "p.kube"), "[Kube]\nYaml=%h/k/p.yaml\n")
	r, err := Scan([]string{d})
	if err != nil {
		t.Fatal(err)
	}
	if got := refsOf(t, r); !reflect.DeepEqual(got, []string{"localhost/qfix/home:1"}) {
		t.Errorf("refs = %q", got)
	}
}

// TestScanSpecialFiles (issue 12 item 7): a FIFO named like a unit used to
// hang the scan, and a unit, drop-in or kube YAML linked to /dev/zero or
// grown huge exhausted memory. Each is now an error naming the file, so
// prune fails closed; the scan never blocks.
func TestScanSpecialFiles(t *testing.T) {
	big := strings.Repeat("# filler\n", MaxUnitSize/9+1)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, d string) string // returns the path the error must name
		is    error
	}{
		{"fifo unit", func(t *testing.T, d string) string {
			p := filepath.Join(d, "f.container")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, regfile.ErrNotRegular},
		{"fifo drop-in", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "a.container"), "[Container]\nImage=localhost/a:1\n")
			if err := os.MkdirAll(filepath.Join(d, "a.container.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "a.container.d", "x.conf")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, regfile.ErrNotRegular},
		{"unit linked to /dev/zero", func(t *testing.T, d string) string {
			p := filepath.Join(d, "z.container")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, regfile.ErrNotRegular},
		{"drop-in linked to /dev/zero", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "a.container"), "[Container]\nImage=localhost/a:1\n")
			if err := os.MkdirAll(filepath.Join(d, "container.d"), 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, "container.d", "z.conf")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, regfile.ErrNotRegular},
		{"kube yaml linked to /dev/zero", func(t *testing.T, d string) string {
			write(t, filepath.Join(d, "k.kube"), "[Kube]\nYaml=k.yaml\n")
			p := filepath.Join(d, "k.yaml")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, regfile.ErrNotRegular},
		{"huge unit", func(t *testing.T, d string) string {
			p := filepath.Join(d, "h.container")
			write(t, p, "[Container]\nImage=localhost/h:1\n"+big)
			return p
		}, regfile.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			want := tc.setup(t, d)
			done := make(chan error, 1)
			go func() { _, err := Scan(ExpandDirs([]string{d})); done <- err }()
			select {
			case err := <-done:
				if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want %v naming %s", err, tc.is, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Scan blocked")
			}
		})
	}
}
