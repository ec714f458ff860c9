package scheduler

import (
	"context"
	"slices"
	"testing"
)

// TestTriggerWithMutating: a manual run with extra arguments carries them
// to its RunFunc; marked mutating (a refresh that pulls), it waits for a
// mutating run in progress although its job is not mutating, and a plain
// run of the same job does not.
func TestTriggerWithMutating(t *testing.T) {
	rec := newRecorder("prune")
	s := New(Config{Jobs: []Job{job(t, "prune", "@hourly", true), job(t, "refresh", "@daily", false)}},
		rec.run, Options{Clock: newFakeClock(t0)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if _, err := s.Trigger("prune", false); err != nil {
		t.Fatal(err)
	}
	waitStarted(t, rec)
	args := []string{"--pull=localhost/app:1"}
	if _, err := s.TriggerWith("refresh", false, args, true); err != nil {
		t.Fatal(err)
	}
	args[0] = "changed by the caller afterwards"
	noStart(t, rec) // waits for prune
	rec.release <- struct{}{}
	r := waitStarted(t, rec)
	if r.Job != "refresh" || !slices.Equal(r.Args, []string{"--pull=localhost/app:1"}) || !r.Mutating {
		t.Fatalf("started %+v", r)
	}
	// While the pulling refresh runs, prune waits for it.
	if _, err := s.Trigger("prune", false); err != nil {
		t.Fatal(err)
	}
	noStart(t, rec)
	rec.release <- struct{}{}
	if r := waitStarted(t, rec); r.Job != "prune" || r.Args != nil {
		t.Fatalf("started %+v, want a plain prune", r)
	}
	// A plain refresh is not held back by prune.
	if _, err := s.Trigger("refresh", false); err != nil {
		t.Fatal(err)
	}
	if r := waitStarted(t, rec); r.Job != "refresh" || r.Args != nil || r.Mutating {
		t.Fatalf("started %+v, want a plain refresh", r)
	}
	close(rec.release)
}
