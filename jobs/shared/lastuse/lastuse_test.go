package lastuse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/state"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// TestMain lets the test binary act as a concurrent writer process.
func TestMain(m *testing.M) {
	if dir := os.Getenv("STWG_LASTUSE_WRITER"); dir != "" {
		db, err := state.Open(dir)
		if err != nil {
			os.Exit(2)
		}
		w, _ := strconv.Atoi(os.Getenv("STWG_LASTUSE_ID"))
		for i := 1; ; i++ {
			at := t0.Add(time.Duration(i) * time.Second)
			uses := []Use{{ImageID: fmt.Sprintf("img%d", w), At: at}, {ImageID: "shared", At: at}, {Name: "localhost/x:1", At: at}}
			if err := Touch(db, uses, at); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(3)
			}
			if n, _ := strconv.Atoi(os.Getenv("STWG_LASTUSE_N")); n > 0 && i >= n {
				os.Exit(0)
			}
		}
	}
	os.Exit(m.Run())
}

func TestTouchOnlyMovesForward(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := Touch(db, []Use{{ImageID: "a", At: t0.Add(time.Hour)}, {Name: "n:1", At: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	if err := Touch(db, []Use{{ImageID: "a", At: t0}, {Name: "n:1", At: t0.Add(2 * time.Hour)}}, t0.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	r, err := Load(db)
	if err != nil {
		t.Fatal(err)
	}
	if !r.ByID["a"].Equal(t0.Add(time.Hour)) || !r.ByName["n:1"].Equal(t0.Add(2*time.Hour)) || !r.Cursor.Equal(t0) {
		t.Fatalf("record = %+v", r)
	}
	if got := r.Of("a", []string{"n:1"}); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("Of = %v", got)
	}
	if err := Forget(db, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if r, _ := Load(db); !r.Of("a", nil).IsZero() {
		t.Fatal("Forget kept the record")
	}
}

type events struct {
	uses  []Use
	err   error
	since []time.Time
}

func (e *events) ContainerUses(_ context.Context, since, until time.Time) ([]Use, error) {
	e.since = append(e.since, since)
	return e.uses, e.err
}

func TestScanContainersAndEvents(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	snap := &layergraph.Snapshot{
		Images:     []layergraph.Image{{ID: "aaaaaaaaaaaaaaaa", Names: []string{"localhost/a:1"}}, {ID: "bbbbbbbbbbbbbbbb"}, {ID: "cccccccccccccccc"}},
		Containers: []layergraph.Container{{ID: "c1", ImageID: "cccccccccccccccc"}},
	}
	ev := &events{uses: []Use{{Name: "localhost/a:1", At: t0.Add(-time.Minute)}, {Name: "bbbbbbbbbbbb", At: t0.Add(-2 * time.Minute)}}}
	if err := Scan(context.Background(), db, snap, ev, t0); err != nil {
		t.Fatal(err)
	}
	r, _ := Load(db)
	if !r.Of("aaaaaaaaaaaaaaaa", nil).Equal(t0.Add(-time.Minute)) {
		t.Errorf("event by name not mapped to ID: %+v", r)
	}
	if !r.Of("bbbbbbbbbbbbbbbb", nil).Equal(t0.Add(-2 * time.Minute)) {
		t.Errorf("event by ID prefix not recorded: %+v", r)
	}
	if !r.Of("cccccccccccccccc", nil).Equal(t0) {
		t.Errorf("container scan not recorded: %+v", r)
	}
	// A failing source: containers still recorded, cursor unchanged so the
	// same window is read again next time.
	ev.err = errors.New("socket gone")
	snap.Containers[0].ImageID = "bbbbbbbbbbbbbbbb"
	err = Scan(context.Background(), db, snap, ev, t0.Add(time.Hour))
	if !errors.Is(err, ErrEvents) {
		t.Fatalf("err = %v, want ErrEvents", err)
	}
	r, _ = Load(db)
	if !r.Cursor.Equal(t0) || !r.Of("bbbbbbbbbbbbbbbb", nil).Equal(t0.Add(time.Hour)) {
		t.Fatalf("after failed events: %+v", r)
	}
	ev.err = nil
	_ = Scan(context.Background(), db, snap, ev, t0.Add(2*time.Hour))
	if got := ev.since[len(ev.since)-1]; !got.Equal(t0) {
		t.Fatalf("retry window starts %v, want %v", got, t0)
	}
}

// Several processes write at once and some are killed with SIGKILL mid-way:
// the record stays readable and every completed write is there.
func TestConcurrentWritersAndKill(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The database exists before the writers start: jobs/shared/state's read-only
	// open of a file another process is still initializing fails (reported).
	if err := Touch(db, nil, t0); err != nil {
		t.Fatal(err)
	}
	start := func(id, n int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "STWG_LASTUSE_WRITER="+dir, fmt.Sprintf("STWG_LASTUSE_ID=%d", id), fmt.Sprintf("STWG_LASTUSE_N=%d", n))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Finite writers run to completion alongside writers killed at random.
	var done []*exec.Cmd
	for i := 0; i < 3; i++ {
		done = append(done, start(i, 40))
	}
	t.Cleanup(func() { // never leave writers running into TempDir removal
		for _, c := range done {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for trial := 0; trial < 20; trial++ {
		c := start(100+trial, 0)
		time.Sleep(time.Duration(5+trial*3) * time.Millisecond)
		_ = c.Process.Signal(syscall.SIGKILL)
		_ = c.Wait()
		if _, err := Load(db); err != nil {
			t.Fatalf("trial %d: record unreadable after kill -9: %v", trial, err)
		}
	}
	for i, c := range done {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	r, err := Load(db)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if got := r.ByID[fmt.Sprintf("img%d", i)]; !got.Equal(t0.Add(40 * time.Second)) {
			t.Errorf("writer %d's last write lost: %v", i, got)
		}
	}
	if r.ByID["shared"].Before(t0.Add(40 * time.Second)) {
		t.Errorf("shared went backwards: %v", r.ByID["shared"])
	}
}
