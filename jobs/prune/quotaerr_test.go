package prune_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/prune"
	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// TestQuotaReadError: a disk quota that cannot be read (EPERM, as the
// kernel answered from inside the rootless user namespace) is logged with
// the kernel's error and applies no pressure: nothing is removed. A reading
// that says "no quota" is silent. The failing read is a fake: this
// machine's kernel enforces no quota to refuse.
func TestQuotaReadError(t *testing.T) {
	p := testenv.NewPodman(t, "vfs")
	for i := 0; i < 3; i++ {
		imp(t, p, fmt.Sprintf("localhost/qe%d:1", i), fmt.Sprint(i))
	}
	st, err := storeopen.Open(types.StoreOptions{GraphRoot: p.Root, RunRoot: p.RunRoot, GraphDriverName: p.Driver})
	if err != nil {
		t.Fatal(err)
	}
	defer storeopen.Close(st)
	db, err := state.Open(filepath.Join(p.Dir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(policy.Source{Name: "t", Data: []byte("version = 1\n[prune]\nmin_free = \"0\"\nmin_age = \"0\"\nkeep_last = 0\n")})
	if err != nil {
		t.Fatal(err)
	}
	eperm := quota.Reading{Path: p.Root, UID: 0, Err: fmt.Sprintf("quota: quotactl_fd(%s, uid 0): %v", p.Root, unix.EPERM)}
	none := quota.Reading{Path: p.Root, UID: 1000, NoQuota: "no block limit for uid 1000"}
	for _, tc := range []struct {
		name    string
		reading quota.Reading
		warn    bool
	}{{"error", eperm, true}, {"no quota", none, false}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			j := &prune.Job{
				Store: st, State: db, Policy: pol.Prune, Log: slog.New(slog.NewTextHandler(&logs, nil)),
				Quota: func(string) (quota.Usage, error) { return tc.reading.Result() },
			}
			r, err := j.Run(context.Background(), false)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Removed) != 0 || r.Pressure != "" || r.NeedBytes != 0 || len(r.Kept) != 3 {
				t.Fatalf("removed %d, pressure %q, need %d, kept %d", len(r.Removed), r.Pressure, r.NeedBytes, len(r.Kept))
			}
			if _, ok := r.Metrics["quota_used_bytes"]; ok {
				t.Errorf("quota figures reported without a quota: %v", r.Metrics)
			}
			warned := strings.Contains(logs.String(), "reading the disk quota failed") && strings.Contains(logs.String(), unix.EPERM.Error())
			if warned != tc.warn {
				t.Errorf("warning logged %v, want %v:\n%s", warned, tc.warn, logs.String())
			}
		})
	}
}
