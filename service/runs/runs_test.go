package runs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
)

func TestStore(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, 3)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 5 {
		st := t0.Add(time.Duration(i) * time.Minute)
		r := &api.Run{ID: NewID("prune", st), Job: "prune", Started: st, Outcome: api.OutcomeSucceeded}
		if i == 4 {
			r.DryRun = true // a dry run is never the "last run"
		}
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	v := &api.Run{ID: NewID("volumes", t0), Job: "volumes", Started: t0, Outcome: api.OutcomeFailed}
	if err := s.Put(v); err != nil {
		t.Fatal(err)
	}

	h, err := s.History("prune", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 3 || h[0].ID != ids[4] || h[2].ID != ids[2] {
		t.Fatalf("history kept %d runs, newest %v", len(h), h)
	}
	if _, err := s.Get(ids[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("trimmed run: %v", err)
	}
	all, _ := s.History("", 2)
	if len(all) != 2 || all[0].ID != ids[4] {
		t.Fatalf("history of all jobs: %v", all)
	}
	last, err := s.Last()
	if err != nil {
		t.Fatal(err)
	}
	if last["prune"].ID != ids[3] || last["volumes"].ID != v.ID || len(last) != 2 {
		t.Fatalf("last = %v", last)
	}
	if l, err := s.Latest("prune"); err != nil || l.ID != ids[4] {
		t.Fatalf("latest = %v, %v", l, err)
	}
	if _, err := s.Latest("verify"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("latest of a job without runs: %v", err)
	}
}

func TestJobOf(t *testing.T) {
	for id, want := range map[string]string{
		NewID("prune", time.Now()): "prune", "20260101T000000.000Z-volumes-ab12": "volumes", "junk": "", "a-b": "",
	} {
		if got := jobOf([]byte(id)); got != want {
			t.Errorf("jobOf(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestStats: finished non-dry runs are counted (outcome, duration
// histogram, last success, freed bytes) in the state database; dry runs and
// unfinished runs are not; a run without a report keeps the previous
// report figures.
func TestStats(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, 2) // retention does not touch the counters
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	put := func(i int, o api.Outcome, d time.Duration, dry bool, report string) {
		t.Helper()
		st := t0.Add(time.Duration(i) * time.Hour)
		r := &api.Run{ID: NewID("prune", st), Job: "prune", Started: st, Finished: st.Add(d), Outcome: o, DryRun: dry}
		if report != "" {
			r.Report = []byte(report)
		}
		if err := s.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	put(0, api.OutcomeSucceeded, 500*time.Millisecond, false, `{"job":"prune","metrics":{"freed_bytes":100,"usage_bytes":7}}`)
	put(1, api.OutcomeSucceeded, time.Second, true, `{"job":"prune","metrics":{"freed_bytes":999}}`) // dry
	put(2, api.OutcomeFailed, 3*time.Second, false, "")                                              // no report
	put(3, api.OutcomeRunning, 0, false, "")
	put(4, api.OutcomeSucceeded, 2*time.Second, false, `{"job":"prune","metrics":{"freed_bytes":50}}`)
	put(5, api.OutcomeTimedOut, 20*time.Second, false, "")

	all, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	st := all["prune"]
	if st.Runs[api.OutcomeSucceeded] != 2 || st.Runs[api.OutcomeFailed] != 1 || st.Runs[api.OutcomeTimedOut] != 1 || len(st.Runs) != 3 {
		t.Errorf("runs = %v", st.Runs)
	}
	if st.DurationCount != 4 || st.DurationSum != 25.5 {
		t.Errorf("duration count %d sum %v", st.DurationCount, st.DurationSum)
	}
	// Buckets 0.1 0.4 1.6 6.4 25.6 ...: 0.5 s, 2 s, 3 s, 20 s.
	if want := []uint64{0, 0, 1, 3, 4, 4, 4, 4, 4, 4}; !slices.Equal(st.DurationBuckets, want) {
		t.Errorf("buckets %v, want %v", st.DurationBuckets, want)
	}
	if !st.LastSuccess.Equal(t0.Add(4*time.Hour + 2*time.Second)) {
		t.Errorf("last success %v", st.LastSuccess)
	}
	if st.FreedBytes != 150 {
		t.Errorf("freed %v, want 150", st.FreedBytes)
	}
	// The last report's figures (the runs without one left them alone).
	if st.Metrics["freed_bytes"] != 50 || len(st.Metrics) != 1 || !strings.Contains(st.MetricsRun, "T040000") {
		t.Errorf("figures %v from %s", st.Metrics, st.MetricsRun)
	}
	if _, ok := all["volumes"]; ok {
		t.Error("stats for a job that never ran")
	}
}
