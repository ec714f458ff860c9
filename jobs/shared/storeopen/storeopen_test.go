package storeopen

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestDetectDriver(t *testing.T) {
	for _, tt := range []struct {
		dirs     []string
		priority []string
		want     string
	}{
		{dirs: []string{"vfs-images"}, want: "vfs"},
		{dirs: []string{"overlay-images"}, priority: []string{"vfs"}, want: "overlay"},
		{priority: []string{"vfs", "overlay"}, want: "vfs"},
		{want: "overlay"},
	} {
		root := t.TempDir()
		for _, d := range tt.dirs {
			if err := os.Mkdir(filepath.Join(root, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if got := DetectDriver(root, tt.priority); got != tt.want {
			t.Errorf("dirs %v priority %v: %q, want %q", tt.dirs, tt.priority, got, tt.want)
		}
	}
}

// TestResolveWithoutPodman: without podman in PATH, storage.conf
// (CONTAINERS_STORAGE_CONF) is read as containers/storage reads it; flags
// override it field by field; the driver is always named.
func TestResolveWithoutPodman(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", t.TempDir())
	conf := filepath.Join(dir, "storage.conf")
	body := "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + dir + "/g\"\nrunroot = \"" + dir + "/r\"\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	res, err := Resolve(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	so := res.Options
	if res.Source != SourceStorageConf || so.GraphDriverName != "vfs" || so.GraphRoot != dir+"/g" || so.RunRoot != dir+"/r" {
		t.Errorf("from storage.conf: %+v", res)
	}
	o := Options{GraphRoot: dir + "/g2", Driver: "overlay", DriverOpts: []string{"overlay.mountopt=nodev"}}.Merge(Options{RunRoot: dir + "/r2", Driver: "vfs"})
	res, err = Resolve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	so = res.Options
	if so.GraphDriverName != "overlay" || so.GraphRoot != dir+"/g2" || so.RunRoot != dir+"/r2" || len(so.GraphDriverOptions) != 1 {
		t.Errorf("with overrides: %+v", so)
	}
	if os.Geteuid() == 0 && NeedsUserNamespace(so, true) {
		t.Error("root never needs the rootless user namespace")
	}
	// A podman named explicitly but missing is an error, not a fallback.
	if _, err := (Resolver{Podman: "/nonexistent/podman"}).Resolve(context.Background(), Options{}); err == nil {
		t.Error("missing explicit podman: no error")
	}
}
