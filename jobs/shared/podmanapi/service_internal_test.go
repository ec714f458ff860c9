package podmanapi

import (
	"fmt"
	"os"
	"slices"
	"testing"
)

// TestDefaultSockets: podman's socket paths for root and users, also from
// inside the rootless user namespace (uid 0 there) without XDG_RUNTIME_DIR.
func TestDefaultSockets(t *testing.T) {
	if got := DefaultSockets(true); !slices.Equal(got, []string{"/run/podman/podman.sock"}) {
		t.Errorf("system: %v", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/77")
	if got := DefaultSockets(false); !slices.Equal(got, []string{"/run/user/77/podman/podman.sock"}) {
		t.Errorf("user with XDG_RUNTIME_DIR: %v", got)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("_CONTAINERS_ROOTLESS_UID", "")
	if got, want := DefaultSockets(false), fmt.Sprintf("/run/user/%d/podman/podman.sock", os.Getuid()); !slices.Equal(got, []string{want}) {
		t.Errorf("user without XDG_RUNTIME_DIR: %v, want %s", got, want)
	}
	t.Setenv("_CONTAINERS_ROOTLESS_UID", "1234")
	if got := DefaultSockets(false); !slices.Equal(got, []string{"/run/user/1234/podman/podman.sock"}) {
		t.Errorf("inside the user namespace: %v", got)
	}
}
