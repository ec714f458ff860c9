package quota

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestReadingResult: a reading survives the trip through JSON (the handoff
// into the user namespace) and gives back what Get gave: figures, "no
// quota", or an error that is neither.
func TestReadingResult(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       Reading
		noQuota bool
		err     bool
	}{
		{name: "figures", r: Reading{Path: "/s", UID: 1000, Usage: Usage{SoftLimitBytes: 100 << 20, HardLimitBytes: 200 << 20, UsedBytes: 95 << 20}}},
		{name: "no quota", r: Reading{Path: "/s", UID: 1000, NoQuota: "quota: no user quota on /s: no such process"}, noQuota: true},
		{name: "error", r: Reading{Path: "/s", UID: 0, Err: "quota: quotactl_fd(/s, uid 0): operation not permitted"}, err: true},
		// Never Get's output: a forged or truncated reading is an error.
		{name: "zero", r: Reading{Path: "/s", UID: 1000}, err: true},
		{name: "negative", r: Reading{Path: "/s", UID: 1000, Usage: Usage{SoftLimitBytes: 10, UsedBytes: -1}}, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			var back Reading
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			u, err := back.Result()
			switch {
			case tc.noQuota:
				if !errors.Is(err, ErrNoQuota) {
					t.Fatalf("want ErrNoQuota, got %v", err)
				}
			case tc.err:
				if err == nil || errors.Is(err, ErrNoQuota) {
					t.Fatalf("want an error other than ErrNoQuota, got %v (%+v)", err, u)
				}
			default:
				if err != nil || u != tc.r.Usage {
					t.Fatalf("got %+v %v, want %+v", u, err, tc.r.Usage)
				}
			}
		})
	}
}

// TestReadNotCreatedYet: a graphroot that does not exist yet is asked about
// through its nearest existing ancestor, so the answer is about the
// filesystem (a quota or none), not "no such file".
func TestReadNotCreatedYet(t *testing.T) {
	dir := t.TempDir()
	r := Read(filepath.Join(dir, "a", "b", "storage"), os.Getuid())
	if r.Err != "" {
		t.Fatalf("read error for a path not created yet: %s", r.Err)
	}
	if _, err := r.Result(); err != nil && !errors.Is(err, ErrNoQuota) {
		t.Fatal(err)
	}
	if r := Read(filepath.Join(dir, "f", "x"), os.Getuid()); r.Err != "" {
		t.Fatal(r.Err)
	}
	// A file in the way is not "not created yet".
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := Read(filepath.Join(dir, "file", "x"), os.Getuid()); r.Err == "" {
		t.Fatalf("path under a regular file read as %+v", r)
	}
}
