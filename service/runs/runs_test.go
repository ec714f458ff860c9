package runs

import (
	"errors"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/state"
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
