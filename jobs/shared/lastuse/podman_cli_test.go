package lastuse_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/test/testenv"
)

// TestRunRmSeenByPodmanCLI: with no API socket, the host's podman command
// reports a real `podman run --rm` (create and start, named as typed) from
// its event log, with the window cut locally at a past until.
func TestRunRmSeenByPodmanCLI(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.ImportRunnable(t, "localhost/cli-used:1", map[string]string{"/marker": "used"})
	p.ImportRunnable(t, "localhost/cli-late:1", map[string]string{"/marker": "late"})

	before := time.Now()
	p.Run(t, "run", "--rm", "localhost/cli-used:1", "/bin/true")
	after := time.Now()
	time.Sleep(1100 * time.Millisecond) // the late run is after the window
	p.Run(t, "run", "--rm", "localhost/cli-late:1", "/bin/true")

	// Only podman's own configuration (the test's CONTAINERS_* files): no
	// store flags, as on a default install.
	src := lastuse.PodmanCLI{Env: p.Env, Timeout: time.Minute}
	uses, err := src.ContainerUses(context.Background(), before.Add(-time.Second), after)
	if err != nil {
		t.Fatal(err)
	}
	var used int
	for _, u := range uses {
		switch u.Name {
		case "localhost/cli-used:1":
			used++
			if u.At.Before(before.Add(-time.Second)) || u.At.After(after) {
				t.Errorf("use at %v, want between %v and %v", u.At, before, after)
			}
		default:
			t.Errorf("unexpected use %+v (the late run is after until)", u)
		}
	}
	if used != 2 {
		t.Fatalf("uses %+v: want the create and start of localhost/cli-used:1", uses)
	}

	// The same with the store given as flags (what a user's --root etc. become).
	src = lastuse.PodmanCLI{Args: p.Flags(), Env: p.Env}
	uses, err = src.ContainerUses(context.Background(), before.Add(-time.Second), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) != 4 {
		t.Fatalf("uses %+v: want create and start of both runs", uses)
	}
}

// TestPodmanCLIJournaldWithoutJournal: events_logger = "journald" on a host
// without a journal (this machine has no systemd) must answer, not hang.
func TestPodmanCLIJournaldWithoutJournal(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
		t.Skip("this host has a journal")
	}
	p := testenv.NewPodman(t, "vfs")
	conf := filepath.Join(p.Dir(), "containers.conf")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), `events_logger = "file"`, `events_logger = "journald"`, 1)
	if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Import(t, "localhost/j:1", map[string]string{"a": "b"})
	p.Run(t, "create", "--name", "j", "localhost/j:1", "true")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	uses, err := lastuse.PodmanCLI{Args: p.Flags(), Env: p.Env}.ContainerUses(ctx, time.Now().Add(-time.Hour), time.Now())
	if ctx.Err() != nil {
		t.Fatalf("podman events did not answer in time: %v", ctx.Err())
	}
	// Either answer is fine (nothing readable, or an error); hanging is not.
	t.Logf("uses %+v, err %v", uses, err)
}

// TestPodmanCLITimeout: a podman that never answers is cut off by Timeout,
// the process group is killed, and the error says so. (A stuck podman is a
// fault a real one does not produce on demand, so a script stands in.)
func TestPodmanCLITimeout(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "podman")
	// A child keeps stdout open: waiting must not depend on it exiting.
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nsleep 60 &\nsleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := lastuse.PodmanCLI{Bin: bin, Timeout: 500 * time.Millisecond}.ContainerUses(context.Background(), time.Now().Add(-time.Hour), time.Now())
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("returned after %v", d)
	}
}

// TestPodmanCLIFails: podman's own error (here an unknown store flag value)
// comes back with its message.
func TestPodmanCLIFails(t *testing.T) {
	testenv.RequireTool(t, "podman")
	_, err := lastuse.PodmanCLI{Args: []string{"--storage-driver", "no-such-driver", "--root", t.TempDir(), "--runroot", t.TempDir()}}.ContainerUses(context.Background(), time.Now().Add(-time.Hour), time.Now())
	if err == nil || !strings.Contains(err.Error(), "events") {
		t.Fatalf("error %v, want podman's failure", err)
	}
	t.Log(err)
}
