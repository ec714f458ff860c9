package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/test/testenv"
)

// TestPruneRecordsRunRmWithoutSocket: a default install has no podman API
// socket. `stowage run prune` then reads podman's events with the podman
// command, so a `podman run --rm` (which leaves no container) is recorded
// as a use of its image. stowage gets no store flags: podman and stowage
// both follow the storage.conf in the environment.
func TestPruneRecordsRunRmWithoutSocket(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	used := p.ImportRunnable(t, "localhost/rm-used:1", map[string]string{"/marker": "used"})
	idle := p.ImportRunnable(t, "localhost/rm-idle:1", map[string]string{"/marker": "idle"})

	before := time.Now()
	p.Run(t, "run", "--rm", "localhost/rm-used:1", "/bin/true")
	after := time.Now()

	pol := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	testenv.Run(t, p.Env, testenv.Stowage(t), "--policy", pol, "--state-dir", stateDir,
		"--log-level", "debug", "run", "prune", "--dry-run", "--quadlet-dir", t.TempDir())

	db, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lastuse.Load(db)
	if err != nil {
		t.Fatal(err)
	}
	at := rec.ByID[used]
	if at.Before(before.Add(-time.Second)) || at.After(after) {
		t.Fatalf("use of %.12s recorded at %v, want between %v and %v (record %+v)", used, at, before, after, rec)
	}
	if got := rec.Of(idle, []string{"localhost/rm-idle:1"}); !got.IsZero() {
		t.Fatalf("idle image recorded as used at %v", got)
	}
	if rec.Cursor.Before(after) {
		t.Fatalf("event cursor %v not advanced past %v", rec.Cursor, after)
	}
}

// TestPruneRecordsRootlessEvents: a rootless user's prune over an overlay
// store runs inside the user namespace stowage re-executes into; the podman
// command it runs there for events must read that user's events (podman
// honours _CONTAINERS_USERNS_CONFIGURED and stays in the namespace).
func TestPruneRecordsRootlessEvents(t *testing.T) {
	u := testenv.NewRootlessUser(t, "stwg-events")
	bin := u.Install(t, testenv.Stowage(t))
	dir := filepath.Join(u.Home, "t")
	u.Run(t, nil, "mkdir", "-p", dir, filepath.Join(dir, "quadlet"), filepath.Join(dir, "state"))
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
	tarPath := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarPath, testenv.TarBytes(t, map[string]string{"/f": "x"}), 0o644); err != nil {
		t.Fatal(err)
	}
	u.Run(t, env, "podman", "import", "-q", tarPath, "localhost/rl-used:1")
	used := strings.TrimSpace(u.Run(t, env, "podman", "image", "inspect", "--format", "{{.Id}}", "localhost/rl-used:1"))
	before := time.Now()
	// A container created and removed: only the event log remembers it.
	u.Run(t, env, "podman", "create", "--name", "gone", "localhost/rl-used:1", "/f")
	u.Run(t, env, "podman", "rm", "gone")
	after := time.Now()

	pol := filepath.Join(dir, "stowage.toml")
	write(pol, "version = 1\n")
	stateDir := filepath.Join(dir, "state")
	cmd := u.Command(env, bin, "--policy", pol, "--state-dir", stateDir, "--log-level", "debug",
		"run", "prune", "--dry-run", "--quadlet-dir", filepath.Join(dir, "quadlet"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("stowage run prune as %s: %v\n%s", u.Name, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "podman events unavailable") {
		t.Fatalf("events not read:\n%s", stderr.String())
	}

	db, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := lastuse.Load(db)
	if err != nil {
		t.Fatal(err)
	}
	if at := rec.ByID[used]; at.Before(before.Add(-time.Second)) || at.After(after) {
		t.Fatalf("use of %.12s recorded at %v, want between %v and %v (record %+v)\n%s", used, at, before, after, rec, stderr.String())
	}
}

// TestPruneForgedQuotaHandoff: a disk quota reading in the handoff variable
// of a process that is not the one re-executed inside the user namespace
// (here: root, in the initial namespace, with the marker variable forged
// too) is not believed: the kernel's uid map says otherwise. It is logged
// as a quota that could not be read, and the forged limit (1 MiB against a
// store far larger) plans no removal.
func TestPruneForgedQuotaHandoff(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	for i := 0; i < 2; i++ {
		p.Import(t, fmt.Sprintf("localhost/forged%d:1", i), map[string]string{"/f": strings.Repeat(fmt.Sprint(i), 1<<20)})
	}
	pol := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[prune]\nmin_free = \"0\"\nmin_age = \"0\"\nkeep_last = 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	handoff := map[string]any{
		"overrides": map[string]any{"graphRoot": p.Root, "runRoot": p.RunRoot, "driver": p.Driver},
		"resolution": map[string]any{
			"options": map[string]any{"root": p.Root, "runroot": p.RunRoot, "driver": p.Driver},
			"source":  "podman",
		},
		"quota": map[string]any{"path": p.Root, "uid": 0, "usage": map[string]any{"SoftLimitBytes": 1 << 20, "HardLimitBytes": 2 << 20, "UsedBytes": 100 << 20}},
	}
	data, err := json.Marshal(handoff)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Stowage(t), append(p.Flags(), "--user", "--policy", pol, "--state-dir", t.TempDir(),
		"run", "prune", "--dry-run", "--format", "json", "--quadlet-dir", t.TempDir())...)
	cmd.Env = append(os.Environ(), append(p.Env, storeopen.HandoffEnv+"="+string(data), "_CONTAINERS_USERNS_CONFIGURED=done")...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var r prune.Report
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	if len(r.Removed) != 0 || r.Pressure != "" || r.LimitBytes != 0 {
		t.Fatalf("forged quota acted on: removed %d, pressure %q, limit %d", len(r.Removed), r.Pressure, r.LimitBytes)
	}
	if !strings.Contains(stderr.String(), "reading the disk quota failed") || !strings.Contains(stderr.String(), "not in a user namespace") {
		t.Fatalf("no clear warning:\n%s", stderr.String())
	}
}
