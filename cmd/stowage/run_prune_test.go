package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/lastuse"
	"github.com/stowage/stowage/jobs/state"
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
