package volumes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// writePolicy writes a policy file with the given [volumes] body.
func writePolicy(t *testing.T, volumesTable string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(path, []byte("version = 1\n[volumes]\n"+volumesTable), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func decodeReport(t *testing.T, out string) Report {
	t.Helper()
	var r Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decoding report: %v\n%s", err, out)
	}
	return r
}

// TestCLIStartsService runs `stowage run volumes` on a store chosen with
// --root/--runroot and no podman socket: stowage starts a private podman
// service over that store, uses it, and stops it.
func TestCLIStartsService(t *testing.T) {
	e := newStore(t)
	anon := e.anonDangling(t, 80_000)
	e.p.Run(t, "volume", "create", "named")
	pol := writePolicy(t, "min_age = \"0s\"\n")

	out := e.p.Stowage(t, "--policy", pol, "run", "volumes", "--dry-run", "--format", "json")
	r := decodeReport(t, out)
	if !r.DryRun || !slices.Equal(names(r.Removed), []string{anon}) {
		t.Fatalf("dry run report removed %v", names(r.Removed))
	}
	if got := e.volumes(t); !slices.Equal(got, sorted([]string{anon, "named"})) {
		t.Fatalf("dry run changed volumes: %v", got)
	}

	out = e.p.Stowage(t, "--policy", pol, "run", "volumes", "--format", "json")
	r = decodeReport(t, out)
	if !r.PodmanStarted || r.PodmanVersion == "" || r.Job != "volumes" {
		t.Errorf("report: started=%v version=%q job=%q", r.PodmanStarted, r.PodmanVersion, r.Job)
	}
	if !slices.Equal(names(r.Removed), []string{anon}) || r.Removed[0].Bytes < 80_000 || r.Removed[0].Created.IsZero() {
		t.Errorf("removed %+v, want %s with its size and creation time", r.Removed, anon)
	}
	if reasons(r.Kept)["named"] != ReasonNamed || len(r.Events) != 1 || r.Events[0].Volume != anon {
		t.Errorf("kept %+v events %+v", r.Kept, r.Events)
	}
	if got := e.volumes(t); !slices.Equal(got, []string{"named"}) {
		t.Errorf("volumes left %v, want [named]", got)
	}
	// The private service is gone with its socket directory.
	if _, err := os.Stat(filepath.Dir(r.PodmanSocket)); !os.IsNotExist(err) {
		t.Errorf("private service dir %s still exists: %v", filepath.Dir(r.PodmanSocket), err)
	}
	// The JSON field names the issue asks for.
	for _, f := range []string{`"removed"`, `"kept"`, `"podman_version"`, `"name"`, `"reason"`, `"bytes"`, `"created"`} {
		if !strings.Contains(out, f) {
			t.Errorf("JSON report lacks %s", f)
		}
	}
}

// TestCLIUsesSocket points [volumes] podman_socket at a running service: it
// is used, nothing is started, and the table output lists the volumes.
func TestCLIUsesSocket(t *testing.T) {
	e := newEnv(t)
	anon := e.anonDangling(t, 10)
	e.p.Run(t, "volume", "create", "--label", "io.stowage.keep", "scratch")
	pol := writePolicy(t, "min_age = \"0s\"\nanonymous_only = false\npodman_socket = \""+e.svc.Socket+"\"\n")
	r := decodeReport(t, e.p.Stowage(t, "--policy", pol, "run", "volumes", "--format", "json"))
	if r.PodmanStarted || r.PodmanSocket != e.svc.Socket {
		t.Errorf("used %s (started=%v), want %s", r.PodmanSocket, r.PodmanStarted, e.svc.Socket)
	}
	if !slices.Equal(names(r.Removed), []string{anon}) || reasons(r.Kept)["scratch"] != ReasonKeepLabel {
		t.Errorf("removed %v kept %+v", names(r.Removed), r.Kept)
	}
	table := e.p.Stowage(t, "--policy", pol, "run", "volumes", "--dry-run")
	if !strings.Contains(table, "scratch") || !strings.Contains(table, "keep_label") || !strings.Contains(table, "podman ") {
		t.Errorf("table output:\n%s", table)
	}
}

// TestCLINoPodman: no socket answers and no podman binary → the job fails
// with a clear message and nothing is removed.
func TestCLINoPodman(t *testing.T) {
	e := newStore(t)
	e.anonDangling(t, 10)
	before := e.volumes(t)
	pol := writePolicy(t, "min_age = \"0s\"\npodman_socket = \""+filepath.Join(t.TempDir(), "none.sock")+"\"\n")
	env := append(slices.Clone(e.p.Env), "PATH=/nonexistent")
	out, err := testenv.RunErr(env, testenv.Stowage(t), append(e.p.Flags(), "--policy", pol, "run", "volumes", "--format", "json")...)
	if err == nil {
		t.Fatalf("run volumes without podman succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "no podman API socket answers and no podman binary") || !strings.Contains(err.Error(), "none.sock") {
		t.Errorf("error = %v, want a clear message naming the socket", err)
	}
	if got := e.volumes(t); !slices.Equal(got, before) {
		t.Errorf("volumes changed: %v → %v", before, got)
	}
}
