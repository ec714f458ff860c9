package prune_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/test/testenv"
)

// TestPruneRefusesDamagedState (issue 12 items 3 and 6): with the state
// database emptied or truncated, prune used to start afresh without the pins
// (and removed the pinned image) or die of SIGBUS. It now removes nothing,
// exits non-zero naming the file and the way out, and leaves the file alone.
func TestPruneRefusesDamagedState(t *testing.T) {
	e := newEnv(t, "vfs")
	pinned := imp(t, e.p, "localhost/pinned:1", "pinned")
	e.writePolicy(t, "min_age = \"0\"\nkeep_last = 0")
	e.p.Stowage(t, e.stowageArgs("pin", "localhost/pinned:1")...)
	path := filepath.Join(e.state, state.FileName)
	for _, damage := range []string{"empty", "truncated"} {
		t.Run(damage, func(t *testing.T) {
			size := int64(0)
			if damage == "truncated" {
				size = int64(os.Getpagesize()) * 3 // both meta pages, not the rest
				good, err := os.ReadFile(path + ".good")
				if err == nil {
					if err := os.WriteFile(path, good, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			} else {
				good, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".good", good, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"run", "prune", "--format", "json", "--quadlet-dir", e.quadlet},
				{"pins"},
			} {
				out, err := testenv.RunErr(e.p.Env, testenv.Stowage(t), append(e.p.Flags(), e.stowageArgs(args...)...)...)
				if err == nil {
					t.Fatalf("%s succeeded on a damaged state database:\n%s", args[0], out)
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "mv "+path) || strings.Contains(msg, "SIGBUS") {
					t.Errorf("%s: error does not name the file and the way out: %v", args[0], err)
				}
			}
			if _, ok := e.images(t)[pinned]; !ok {
				t.Fatal("the pinned image was removed")
			}
			if fi, err := os.Stat(path); err != nil || fi.Size() != size {
				t.Fatalf("the damaged file was changed: %v, %v", fi, err)
			}
		})
	}
}
