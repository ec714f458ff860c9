package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestPolicyCheckUnreadableDropinDir (issue 12 item 11): a user whose
// stowage.toml.d cannot be read (mode 000) used to get "policy ok" and exit
// 0, its drop-ins silently left out. It is now an error naming the
// directory. Root reads anything, so this runs as a rootless user.
func TestPolicyCheckUnreadableDropinDir(t *testing.T) {
	u := testenv.NewRootlessUser(t, "stwg-poldir")
	bin := u.Install(t, testenv.Stowage(t))
	pol := filepath.Join(u.Home, "stowage.toml")
	u.Run(t, nil, "sh", "-c", `printf 'version = 1\n' > "$1" && mkdir "$1.d" && printf '[prune]\nquota = "1G"\n' > "$1.d/10-quota.toml" && chmod 000 "$1.d"`, "sh", pol)
	out, err := u.RunErr(nil, bin, "--policy", pol, "policy", "check")
	if err == nil {
		t.Fatalf("policy check succeeded with an unreadable drop-in directory: %s", out)
	}
	if !strings.Contains(err.Error(), pol+".d") || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("error does not name %s.d and why: %v", pol, err)
	}
}
