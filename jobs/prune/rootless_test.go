package prune_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/test/testenv"
)

// TestRootlessOverlay prunes a rootless user's own overlay store: stowage
// must enter the user namespace (subuid-owned layers) and apply the rules
// exactly as for root.
func TestRootlessOverlay(t *testing.T) {
	u := testenv.NewRootlessUser(t, "stwg-prune")
	bin := u.Install(t, testenv.Stowage(t))
	dir := filepath.Join(u.Home, "t")
	u.Run(t, nil, "mkdir", "-p", dir, filepath.Join(dir, "quadlet"))
	// The user's own storage.conf: overlay under their home, like podman's
	// rootless default, but explicit so the test does not depend on it.
	conf := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(u.Home, ".local/share/containers/storage"), filepath.Join(u.RuntimeDir, "containers"))
	u.Run(t, nil, "sh", "-c", "mkdir -p ~/.config/containers && cat > ~/.config/containers/storage.conf", conf)
	write := func(path, content string) {
		t.Helper()
		u.Run(t, nil, "sh", "-c", "cat > "+path+" <<'EOF'\n"+content+"EOF\n")
	}
	containersConf := filepath.Join(dir, "containers.conf")
	write(containersConf, "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n")
	env := []string{"CONTAINERS_CONF=" + containersConf}

	imp := func(ref, content string) string {
		tarPath := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		if err := os.WriteFile(tarPath, testenv.TarBytes(t, map[string]string{"/f": strings.Repeat(content, 2048)}), 0o644); err != nil {
			t.Fatal(err)
		}
		out := u.Run(t, env, "podman", "import", "-q", tarPath, ref)
		return strings.TrimPrefix(lastLine(out), "sha256:")
	}
	app1 := imp("localhost/app:1", "a1")
	inuse := imp("localhost/inuse:1", "iu")
	dangling := imp("localhost/dangling:1", "dg")
	u.Run(t, env, "podman", "untag", dangling)
	u.Run(t, env, "podman", "create", "localhost/inuse:1", "/bin/true")
	time.Sleep(1100 * time.Millisecond)
	split := time.Now()
	app2 := imp("localhost/app:2", "a2")
	now := split.Add(time.Hour - 500*time.Millisecond).UTC().Format(time.RFC3339Nano)
	pol := filepath.Join(dir, "stowage.toml")
	write(pol, "version = 1\n[prune]\nmin_free = \"0\"\nmin_age = \"1h\"\nunused_for = \"30m\"\nkeep_last = 0\n")

	out := u.Run(t, env, bin, "--policy", pol, "run", "prune", "--format", "json", "--now", now, "--quadlet-dir", filepath.Join(dir, "quadlet"))
	var r prune.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	removed, kept := byID(r.Removed), byID(r.Kept)
	if removed[dangling].Reason != prune.ReasonDangling || removed[app1].Reason != prune.ReasonUnusedFor {
		t.Errorf("removed %+v", r.Removed)
	}
	if kept[inuse].Reason != prune.KeptInUse || kept[app2].Reason != prune.KeptMinAge {
		t.Errorf("kept %+v", r.Kept)
	}
	if r.FreedBytes != r.PlannedFreeBytes || r.FreedBytes == 0 {
		t.Errorf("freed %d, planned %d", r.FreedBytes, r.PlannedFreeBytes)
	}
	left := u.Run(t, env, "podman", "images", "-a", "-q", "--no-trunc")
	for _, id := range []string{dangling, app1} {
		if strings.Contains(left, id) {
			t.Errorf("%.12s still listed by rootless podman", id)
		}
	}
	for _, id := range []string{inuse, app2} {
		if !strings.Contains(left, id) {
			t.Errorf("%.12s is gone", id)
		}
	}
	// The state lives in the user's XDG state dir, owned by the user.
	fi, err := os.Stat(filepath.Join(u.Home, ".local/state/stowage/state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != u.UID {
		t.Errorf("state.db owned by %v, want uid %d", fi.Sys(), u.UID)
	}
	u.Run(t, env, "podman", "create", "localhost/app:2", "/bin/true")
}
