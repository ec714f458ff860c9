package prune_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/test/testenv"
)

// TestQuota fills a rootless user's store on a filesystem with a user
// quota past the high watermark of their soft limit; the prune must bring
// the user's usage, as the quota tools count it, under the low watermark.
func TestQuota(t *testing.T) {
	qfs := testenv.NewQuotaFS(t, 96)
	u := testenv.NewRootlessUser(t, "stwg-prune-q")
	bin := u.Install(t, testenv.Stowage(t))
	root := filepath.Join(qfs.Dir, "store")
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(u.Home, "t")
	u.Run(t, nil, "mkdir", "-p", dir, filepath.Join(dir, "quadlet"))
	cc := filepath.Join(dir, "containers.conf")
	u.Run(t, nil, "sh", "-c", "printf '[engine]\\ncgroup_manager = \"cgroupfs\"\\nevents_logger = \"file\"\\n' > "+cc)
	env := []string{"CONTAINERS_CONF=" + cc}
	flags := []string{"--root", filepath.Join(root, "graph"), "--runroot", filepath.Join(u.RuntimeDir, "run"), "--storage-driver", "vfs"}

	// Eight images of 2 MiB each (vfs stores each layer as plain files).
	for i := 0; i < 8; i++ {
		tarPath := filepath.Join(dir, fmt.Sprintf("i%d.tar", i))
		if err := os.WriteFile(tarPath, testenv.TarBytes(t, map[string]string{"/f": strings.Repeat(fmt.Sprint(i), 2<<20)}), 0o644); err != nil {
			t.Fatal(err)
		}
		u.Run(t, env, "podman", append(flags, "import", "-q", tarPath, fmt.Sprintf("localhost/q%d:1", i))...)
	}
	used := qfs.UsedBytes(t, u.Name)
	// Soft limit so that usage is at 95%: above high (90%), prune must get
	// it down to 80%.
	soft := used * 100 / 95
	qfs.SetUserQuota(t, u.Name, soft, soft*2)
	pol := filepath.Join(dir, "stowage.toml")
	u.Run(t, nil, "sh", "-c", "printf 'version = 1\\n[prune]\\nmin_free = \"0\"\\nmin_age = \"0\"\\nkeep_last = 0\\n' > "+pol)

	out := u.Run(t, env, bin, append(flags, "--policy", pol, "run", "prune", "--format", "json", "--quadlet-dir", filepath.Join(dir, "quadlet"))...)
	var r prune.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Pressure != "quota" || r.LimitBytes != soft>>10<<10 {
		t.Fatalf("pressure %q limit %d, want quota %d: %s", r.Pressure, r.LimitBytes, soft, out)
	}
	// The disk quota is in the report's figures (the hard-limit alert).
	if m := r.Metrics; m["quota_soft_limit_bytes"] != float64(r.LimitBytes) || m["quota_hard_limit_bytes"] < 2*m["quota_soft_limit_bytes"]-1024 || m["quota_used_bytes"] <= 0 {
		t.Errorf("quota figures %v (limit %d)", m, r.LimitBytes)
	}
	after := qfs.UsedBytes(t, u.Name)
	low := soft * 80 / 100
	if after > low {
		t.Fatalf("usage after prune %d > low watermark %d (before %d, removed %d)", after, low, used, len(r.Removed))
	}
	if len(r.Removed) == 8 {
		t.Fatalf("removed everything; the plan should stop at the low watermark")
	}
}
