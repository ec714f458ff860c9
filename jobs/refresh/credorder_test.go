package refresh

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"go.podman.io/image/v5/types"
)

// TestCredAuthFileOrder: the auth files searched, in containers/image's
// order (pkg/docker/config getAuthFilePaths on Linux).
func TestCredAuthFileOrder(t *testing.T) {
	home, rt := t.TempDir(), t.TempDir()
	uid := os.Getuid()
	tests := []struct {
		name string
		env  map[string]string
		sys  *types.SystemContext
		want []authFile
	}{
		{"defaults with XDG_RUNTIME_DIR", map[string]string{"XDG_RUNTIME_DIR": rt}, nil, []authFile{
			{path: rt + "/containers/auth.json"}, {path: home + "/.config/containers/auth.json"},
			{path: home + "/.docker/config.json"}, {path: home + "/.dockercfg", legacy: true}}},
		{"no XDG_RUNTIME_DIR: /run/containers/UID", nil, nil, []authFile{
			{path: fmt.Sprintf("/run/containers/%d/auth.json", uid)}, {path: home + "/.config/containers/auth.json"},
			{path: home + "/.docker/config.json"}, {path: home + "/.dockercfg", legacy: true}}},
		{"XDG_RUNTIME_DIR missing: skipped", map[string]string{"XDG_RUNTIME_DIR": rt + "/gone"}, nil, []authFile{
			{path: home + "/.config/containers/auth.json"}, {path: home + "/.docker/config.json"}, {path: home + "/.dockercfg", legacy: true}}},
		{"XDG_CONFIG_HOME and DOCKER_CONFIG", map[string]string{"XDG_RUNTIME_DIR": rt, "XDG_CONFIG_HOME": home + "/cfg", "DOCKER_CONFIG": home + "/dc"}, nil, []authFile{
			{path: rt + "/containers/auth.json"}, {path: home + "/cfg/containers/auth.json"},
			{path: home + "/dc/config.json"}, {path: home + "/.dockercfg", legacy: true}}},
		{"--authfile / REGISTRY_AUTH_FILE: that file only", map[string]string{"XDG_RUNTIME_DIR": rt},
			&types.SystemContext{AuthFilePath: "/etc/a.json"}, []authFile{{path: "/etc/a.json"}}},
		{"Docker-compatible file only", nil, &types.SystemContext{DockerCompatAuthFilePath: "/etc/d.json"}, []authFile{{path: "/etc/d.json"}}},
		{"legacy file only", nil, &types.SystemContext{LegacyFormatAuthFilePath: "/etc/l"}, []authFile{{path: "/etc/l", legacy: true}}},
		{"root for implicit paths: the home files still follow", map[string]string{"XDG_RUNTIME_DIR": rt},
			&types.SystemContext{RootForImplicitAbsolutePaths: "/mnt"}, []authFile{
				{path: fmt.Sprintf("/mnt/run/containers/%d/auth.json", uid)}, {path: home + "/.config/containers/auth.json"},
				{path: home + "/.docker/config.json"}, {path: home + "/.dockercfg", legacy: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			for _, k := range []string{"XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "DOCKER_CONFIG"} {
				t.Setenv(k, tt.env[k])
				if tt.env[k] == "" {
					os.Unsetenv(k)
				}
			}
			got := authFiles(quiet(), tt.sys)
			for i := range got {
				got[i].path = filepath.Clean(got[i].path)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("authFiles\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
