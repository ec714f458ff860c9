package storeopen

import (
	"reflect"
	"slices"
	"testing"

	"go.podman.io/storage/types"
)

// TestFromPodmanInfo: podman's answer wins; what it cannot report comes
// from the library's own reading only when both agree on the graphroot.
func TestFromPodmanInfo(t *testing.T) {
	lib := func(graphRoot, driver string, opts ...string) *types.StoreOptions {
		return &types.StoreOptions{
			GraphRoot: graphRoot, RunRoot: "/lib/run", GraphDriverName: driver,
			GraphDriverOptions: opts, ImageStore: "/images",
			PullOptions: map[string]string{"enable_partial_images": "true"},
		}
	}
	for _, tt := range []struct {
		name      string
		info      string
		lib       *types.StoreOptions
		o         Options
		want      types.StoreOptions
		wantNotes int
	}{
		{
			name: "podman 4.3.1, library agrees",
			info: `{"store":{"graphRoot":"/var/lib/containers/storage","runRoot":"/run/containers/storage","graphDriverName":"overlay","graphOptions":{}},"version":{"Version":"4.3.1"}}`,
			lib:  lib("/var/lib/containers/storage/", "overlay"),
			want: types.StoreOptions{GraphRoot: "/var/lib/containers/storage", RunRoot: "/run/containers/storage", GraphDriverName: "overlay",
				ImageStore: "/images", PullOptions: map[string]string{"enable_partial_images": "true"}},
		},
		{
			name: "Debian 13 rootless: system storage.conf graphroot ignored by podman",
			info: `{"store":{"graphRoot":"/home/u/.local/share/containers/storage","runRoot":"/run/user/1000/containers","graphDriverName":"overlay","graphOptions":{"overlay.mountopt":"nodev"}}}`,
			lib:  lib("/var/lib/containers/storage", "overlay", "overlay.mountopt=nodev"),
			want: types.StoreOptions{GraphRoot: "/home/u/.local/share/containers/storage", RunRoot: "/run/user/1000/containers", GraphDriverName: "overlay",
				GraphDriverOptions: []string{"overlay.mountopt=nodev"}},
			wantNotes: 1,
		},
		{
			name: "mount program as podman prints it",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"overlay.mount_program":{"Executable":"/usr/bin/fuse-overlayfs","Package":"fuse-overlayfs","Version":"1.10"},"overlay.mountopt":"nodev"}}}`,
			want: types.StoreOptions{GraphRoot: "/g", RunRoot: "/r", GraphDriverName: "overlay",
				GraphDriverOptions: []string{"overlay.mount_program=/usr/bin/fuse-overlayfs", "overlay.mountopt=nodev"}},
			wantNotes: 1,
		},
		{
			name: "legacy single imagestore key: the library's two stores collapse to it, its list is kept",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"overlay.imagestore":"/b","overlay.mount_program":{"Executable":"/bin/fo"}}}}`,
			lib:  lib("/g", "overlay", "imagestore=/a", "imagestore=/b", "mount_program=/bin/fo"),
			want: types.StoreOptions{GraphRoot: "/g", RunRoot: "/r", GraphDriverName: "overlay",
				GraphDriverOptions: []string{"imagestore=/a", "imagestore=/b", "mount_program=/bin/fo"},
				ImageStore:         "/images", PullOptions: map[string]string{"enable_partial_images": "true"}},
		},
		{
			name: "newer podman 5.x lists additional image stores; the legacy key is dropped",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"imagestore":"/b","additionalImageStores":["/a","/b"]}}}`,
			want: types.StoreOptions{GraphRoot: "/g", RunRoot: "/r", GraphDriverName: "overlay",
				GraphDriverOptions: []string{"imagestore=/a", "imagestore=/b"}},
			wantNotes: 1,
		},
		{
			name: "library options differ: podman's map wins",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"overlay.imagestore":"/b"}}}`,
			lib:  lib("/g", "overlay", "imagestore=/a"),
			want: types.StoreOptions{GraphRoot: "/g", RunRoot: "/r", GraphDriverName: "overlay",
				GraphDriverOptions: []string{"overlay.imagestore=/b"},
				ImageStore:         "/images", PullOptions: map[string]string{"enable_partial_images": "true"}},
			wantNotes: 1,
		},
		{
			name: "transient store reported by podman ≥ 4.4",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"vfs","graphOptions":null,"transientStore":true}}`,
			lib:  lib("/g", ""),
			want: types.StoreOptions{GraphRoot: "/g", RunRoot: "/r", GraphDriverName: "vfs", TransientStore: true,
				ImageStore: "/images", PullOptions: map[string]string{"enable_partial_images": "true"}},
		},
		{
			name: "explicit overrides win",
			info: `{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"overlay.mountopt":"nodev"}}}`,
			o:    Options{GraphRoot: "/x", RunRoot: "/xr", Driver: "vfs", DriverOpts: []string{"vfs.ignore_chown_errors=true"}},
			want: types.StoreOptions{GraphRoot: "/x", RunRoot: "/xr", GraphDriverName: "vfs",
				GraphDriverOptions: []string{"vfs.ignore_chown_errors=true"}},
			wantNotes: 1,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParsePodmanInfo([]byte(tt.info))
			if err != nil {
				t.Fatal(err)
			}
			got, notes, err := FromPodmanInfo(info, tt.lib, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if len(notes) != tt.wantNotes {
				t.Errorf("notes %q, want %d", notes, tt.wantNotes)
			}
		})
	}
}

func TestParsePodmanInfoRejects(t *testing.T) {
	for _, in := range []string{
		`not json`,
		`{"store":{"runRoot":"/r","graphDriverName":"vfs"}}`,
		`{"store":{"graphRoot":"/g","graphDriverName":"vfs"}}`,
		`{"store":{"graphRoot":"/g","runRoot":"/r"}}`,
	} {
		if _, err := ParsePodmanInfo([]byte(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
	info, err := ParsePodmanInfo([]byte(`{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"vfs","graphOptions":{"x":[1]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := FromPodmanInfo(info, nil, Options{}); err == nil {
		t.Error("an option value podman never prints was accepted")
	}
}

func TestPodmanArgs(t *testing.T) {
	o := Options{GraphRoot: "/g", RunRoot: "/r", Driver: "vfs", DriverOpts: []string{"a=1", "b=2"}}
	want := []string{"--root", "/g", "--runroot", "/r", "--storage-driver", "vfs", "--storage-opt", "a=1", "--storage-opt", "b=2"}
	if got := o.PodmanArgs(); !slices.Equal(got, want) {
		t.Errorf("%q, want %q", got, want)
	}
	if got := (Options{}).PodmanArgs(); len(got) != 0 {
		t.Errorf("no overrides gave %q", got)
	}
}

func TestPodmanEnv(t *testing.T) {
	in := []string{"PATH=/bin", "NOTIFY_SOCKET=/x", "LISTEN_FDS=3", "LISTEN_PID=1", "WATCHDOG_USEC=5", "INVOCATION_ID=a", HandoffEnv + "={}", "HOME=/h"}
	if got := podmanEnv(in); !slices.Equal(got, []string{"PATH=/bin", "HOME=/h"}) {
		t.Errorf("%q", got)
	}
}

// FuzzFromPodmanInfo: any JSON podman might print either fails cleanly or
// names a store, and overrides always win.
func FuzzFromPodmanInfo(f *testing.F) {
	f.Add([]byte(`{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"overlay","graphOptions":{"overlay.mount_program":{"Executable":"/x"},"imagestore":"/b","additionalImageStores":["/a","/b"]}}}`))
	f.Add([]byte(`{"store":{"graphRoot":"/g","runRoot":"/r","graphDriverName":"vfs","graphOptions":{"a":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParsePodmanInfo(data)
		if err != nil {
			return
		}
		lib := &types.StoreOptions{GraphRoot: info.Store.GraphRoot, GraphDriverOptions: []string{"imagestore=/a"}}
		o := Options{GraphRoot: "/override"}
		so, _, err := FromPodmanInfo(info, lib, o)
		if err != nil {
			return
		}
		if so.GraphRoot != "/override" || so.RunRoot == "" || so.GraphDriverName == "" {
			t.Fatalf("%+v", so)
		}
	})
}
