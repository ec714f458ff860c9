package quadlet

import (
	"os"
	"path/filepath"
	"testing"
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

func TestScan(t *testing.T) {
	user, sys := t.TempDir(), t.TempDir()
	write(t, filepath.Join(user, "web.container"), "[Unit]\nDescription=x\n[Container]\n# Image=commented.example/no:1\nImage=quay.io/org/web:2\nExec=/bin/true\n")
	write(t, filepath.Join(user, "sub", "db.container"), "[Container]\nImage=postgres\n")
	write(t, filepath.Join(sys, "base.image"), "[Image]\nImage=registry.example:5000/base/img:7\n")
	write(t, filepath.Join(sys, "uses.container"), "[Container]\nImage=base.image\n")
	write(t, filepath.Join(sys, "pod.kube"), "[Kube]\nYaml=pod.yaml\n")
	write(t, filepath.Join(sys, "pod.yaml"), "spec:\n  containers:\n  - name: a\n    image: localhost/kube-a:1\n  - image: \"docker.io/library/redis:7\"\n")
	write(t, filepath.Join(sys, "ignored.network"), "[Network]\nImage=nope:1\n")
	r, err := Scan([]string{user, sys, filepath.Join(sys, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names []string
		want  bool
	}{
		{[]string{"quay.io/org/web:2"}, true},
		{[]string{"quay.io/org/web:3"}, false},
		{[]string{"docker.io/library/postgres:latest"}, true},
		{[]string{"registry.example/library/postgres:latest"}, true}, // short name: any registry
		{[]string{"registry.example:5000/base/img:7"}, true},
		{[]string{"localhost/kube-a:1"}, true},
		{[]string{"docker.io/library/redis:7"}, true},
		{[]string{"docker.io/library/nope:1"}, false},
		{[]string{"commented.example/no:1"}, false},
	} {
		if got := r.Match("id", tc.names) != ""; got != tc.want {
			t.Errorf("Match(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

func TestScanUnreadableUnitIsAnError(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads anything; use a dangling Yaml= instead.
		d := t.TempDir()
		write(t, filepath.Join(d, "x.kube"), "[Kube]\nYaml=/nonexistent/x.yaml\n")
		if _, err := Scan([]string{d}); err == nil {
			t.Fatal("a .kube with an unreadable YAML must fail the scan (prune must not run blind)")
		}
		return
	}
	d := t.TempDir()
	write(t, filepath.Join(d, "x.container"), "[Container]\nImage=a\n")
	_ = os.Chmod(filepath.Join(d, "x.container"), 0)
	if _, err := Scan([]string{d}); err == nil {
		t.Fatal("unreadable unit accepted")
	}
}
