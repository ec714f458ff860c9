package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/service/worker"
	"github.com/stowage/stowage/test/testenv"
)

// TestLogFormat: --log-format json (what the daemon asks of its workers)
// makes every stderr line a JSON record the daemon parses, attributes
// included, durations as "1.5s"; text stays logfmt for a person; anything
// else is refused.
func TestLogFormat(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(format string) (string, error) {
		cmd := exec.Command(bin, append(p.Flags(), "--policy", pol, "--state-dir", filepath.Join(dir, "state"),
			"--log-level", "debug", "--log-format", format, "run", "refresh", "--dry-run", "--format", "json")...)
		cmd.Env = append(os.Environ(), p.Env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		return stderr.String(), err
	}

	out, err := run("json")
	if err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	graphroot, duration := false, false
	for _, l := range lines {
		r := worker.ParseLine([]byte(l))
		if !r.Structured {
			t.Errorf("not a JSON record: %q", l)
		}
		for _, a := range r.Attrs {
			if a.Key == "graphroot" && a.Value.String() == p.Root {
				graphroot = true
			}
			if a.Key == "took" || a.Key == "elapsed" {
				if _, err := time.ParseDuration(a.Value.String()); err != nil {
					t.Errorf("%s = %q, want a duration like 1.5s", a.Key, a.Value)
				}
				duration = true
			}
		}
	}
	if !graphroot || !duration {
		t.Errorf("no record with graphroot=%s or with a duration in:\n%s", p.Root, out)
	}

	out, err = run("text")
	if err != nil || !strings.Contains(out, "level=DEBUG msg=\"store resolved\"") || strings.Contains(out, `"level"`) {
		t.Errorf("text: %v\n%s", err, out)
	}

	for _, args := range [][]string{{"run", "prune", "--dry-run"}, {"jobs", "--socket", filepath.Join(dir, "none.sock")}} {
		_, err := testenv.RunErr(nil, bin, append([]string{"--log-format", "yaml"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), `invalid --log-format "yaml" (want text or json)`) {
			t.Errorf("%v with --log-format yaml: %v", args, err)
		}
	}
}
