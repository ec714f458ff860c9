package refresh

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
)

func TestCommitNewExactlyOnce(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ref := "quay.io/org/app:1"
	ob := observation{ref: ref, digest: "sha256:" + sha('2'), drift: true}

	// A dry run sees the drift as new and records nothing.
	isNew, err := commit(db, []observation{ob}, t0, true)
	if err != nil || !isNew[ref] {
		t.Fatalf("dry run: new=%v err=%v", isNew, err)
	}
	if recs, _ := History(db, ""); len(recs) != 0 {
		t.Fatalf("dry run wrote history: %+v", recs)
	}

	// Two overlapping runs: exactly one of them reports the drift as new.
	var wg sync.WaitGroup
	news := make([]bool, 2)
	for i := range news {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := commit(db, []observation{ob}, t0, false)
			if err != nil {
				t.Error(err)
			}
			news[i] = n[ref]
		}()
	}
	wg.Wait()
	if news[0] == news[1] {
		t.Fatalf("overlapping runs: new = %v, want exactly one true", news)
	}

	// Later sightings update last_seen only.
	t1 := t0.Add(24 * time.Hour)
	if n, err := commit(db, []observation{ob}, t1, false); err != nil || n[ref] {
		t.Fatalf("third sighting: new=%v err=%v", n, err)
	}
	recs, err := History(db, ref)
	if err != nil || len(recs) != 1 {
		t.Fatalf("history: %+v %v", recs, err)
	}
	s := recs[0].Seen
	if len(s) != 1 || !s[0].FirstSeen.Equal(t0) || !s[0].LastSeen.Equal(t1) || !s[0].Drift {
		t.Errorf("seen: %+v", s)
	}

	// The list cache is kept and bounded.
	var obs []observation
	for i := 0; i < maxLists+3; i++ {
		obs = append(obs, observation{ref: ref, digest: ob.digest, listKey: string(rune('a' + i)), inst: "x"})
	}
	if _, err := commit(db, obs, t1, false); err != nil {
		t.Fatal(err)
	}
	recs, _ = History(db, ref)
	if n := len(recs[0].Lists); n == 0 || n > maxLists {
		t.Errorf("list cache has %d entries, want 1..%d", n, maxLists)
	}
}

// TestObserve: the exported entry point records like a run does, list
// cache included, and reports a digest as new once.
func TestObserve(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	ob := Observed{Reference: "quay.io/org/app:1", Digest: "sha256:" + sha('3'), Drift: true, ListKey: "sha256:" + sha('4') + " linux/amd64/", Instance: "sha256:" + sha('3')}
	for i, want := range []bool{true, false} {
		isNew, err := Observe(db, []Observed{ob}, t0.Add(time.Duration(i)*time.Hour))
		if err != nil || isNew[ob.Reference] != want {
			t.Fatalf("observation %d: new=%v err=%v, want new=%v", i, isNew, err, want)
		}
	}
	recs, err := History(db, ob.Reference)
	if err != nil || len(recs) != 1 || len(recs[0].Seen) != 1 || recs[0].Lists[ob.ListKey] != ob.Instance ||
		!recs[0].Seen[0].LastSeen.Equal(t0.Add(time.Hour)) {
		t.Fatalf("history = %+v, %v", recs, err)
	}
}
