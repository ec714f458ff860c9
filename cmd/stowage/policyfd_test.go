package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestPolicyFDThroughUserNamespace: a rootless worker started with
// --policy-fd re-executes itself into the user namespace (overlay), where
// the descriptor is gone; the snapshot must still be the policy it uses,
// and no policy file is read (the --policy file given is broken).
func TestPolicyFDThroughUserNamespace(t *testing.T) {
	u := testenv.NewRootlessUser(t, "stwg-polfd")
	bin := u.Install(t, testenv.Stowage(t))
	dir := filepath.Join(u.Home, "t")
	u.Run(t, nil, "mkdir", "-p", dir)
	conf := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(u.Home, ".local/share/containers/storage"), filepath.Join(u.RuntimeDir, "containers"))
	u.Run(t, nil, "sh", "-c", "mkdir -p ~/.config/containers && cat > ~/.config/containers/storage.conf", conf)
	snap, err := json.Marshal(map[string]any{"format": 1, "sources": []map[string]any{{
		"name": "/etc/stowage/snap.toml",
		"data": base64.StdEncoding.EncodeToString([]byte("version = 1\n[prune]\nquota = \"3GiB\"\nmin_free = \"0\"\n")),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	snapPath := filepath.Join(dir, "snap.json")
	if err := os.WriteFile(snapPath, snap, 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.toml")
	if err := os.WriteFile(broken, []byte("version = 1\n[prune\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := u.RunErr(nil, "sh", "-c", `exec "$0" --user --policy "$1" run prune --dry-run --format json --policy-fd 3 3<"$2"`, bin, broken, snapPath)
	if err != nil {
		t.Fatalf("worker: %v\n%s", err, out)
	}
	var rep struct {
		LimitBytes int64 `json:"limit_bytes"`
		Job        string
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.LimitBytes != 3<<30 {
		t.Fatalf("limit %d, want the snapshot's 3GiB", rep.LimitBytes)
	}
	// Without the descriptor the same command reads the broken file and fails.
	if out, err := u.RunErr(nil, bin, "--user", "--policy", broken, "run", "prune", "--dry-run", "--format", "json"); err == nil || !strings.Contains(out+err.Error(), "broken.toml:2") {
		t.Fatalf("without --policy-fd: %v\n%s", err, out)
	}
}
