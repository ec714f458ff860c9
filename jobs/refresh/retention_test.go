package refresh

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
)

func TestRecordTrim(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	mk := func(n int, lastSeen func(i int) time.Time) Record {
		r := Record{Reference: "r"}
		for i := range n {
			r.Seen = append(r.Seen, Seen{Digest: fmt.Sprint(i), FirstSeen: t0, LastSeen: lastSeen(i)})
		}
		return r
	}
	cases := []struct {
		name  string
		rec   Record
		first string // first digest kept
		n     int
	}{
		{"under the cap", mk(5, func(i int) time.Time { return t0 }), "0", 5},
		{"at the cap", mk(MaxSeen, func(i int) time.Time { return t0 }), "0", MaxSeen},
		{"oldest sightings go, order kept", mk(MaxSeen+8, func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }), "8", MaxSeen},
		// An old digest seen again recently is kept (it would be "new" again otherwise).
		{"recently seen again", mk(MaxSeen+1, func(i int) time.Time {
			if i == 0 {
				return t0.Add(1000 * time.Hour)
			}
			return t0.Add(time.Duration(i) * time.Hour)
		}), "0", MaxSeen},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.rec
			r.trim()
			if len(r.Seen) != c.n || r.Seen[0].Digest != c.first {
				t.Fatalf("kept %d digests from %s, want %d from %s", len(r.Seen), r.Seen[0].Digest, c.n, c.first)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		last time.Time
		want bool
	}{
		{now, false},
		{now.Add(-HistoryRetention), false},
		{now.Add(-HistoryRetention - time.Second), true},
		{time.Time{}, true},
	}
	for _, c := range cases {
		if got := expired(c.last, now); got != c.want {
			t.Errorf("expired(%v) = %v, want %v", c.last, got, c.want)
		}
	}
}

// TestCommitSweepsExpiredRecords: a run drops the records of references no
// run looked at within the retention, and keeps the rest.
func TestCommitSweepsExpiredRecords(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	gone := observation{ref: "quay.io/org/gone:1", digest: "sha256:" + sha('1')}
	kept := observation{ref: "quay.io/org/kept:1", digest: "sha256:" + sha('2')}
	if _, err := commit(db, []observation{gone, kept}, t0, false); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(HistoryRetention / 2)
	if _, err := commit(db, []observation{kept}, t1, false); err != nil {
		t.Fatal(err)
	}
	// A dry run never deletes.
	if _, err := commit(db, []observation{kept}, t0.Add(HistoryRetention+time.Hour), true); err != nil {
		t.Fatal(err)
	}
	if recs, _ := History(db, ""); len(recs) != 2 {
		t.Fatalf("after a dry run: %d records, want 2", len(recs))
	}
	if _, err := commit(db, []observation{kept}, t0.Add(HistoryRetention+time.Hour), false); err != nil {
		t.Fatal(err)
	}
	recs, err := History(db, "")
	if err != nil || len(recs) != 1 || recs[0].Reference != kept.ref {
		t.Fatalf("after the sweep: %+v %v", recs, err)
	}
}
