package pins

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/state"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                      "docker.io/library/alpine:latest",
		"alpine:3.19":                 "docker.io/library/alpine:3.19",
		"quay.io/a/b":                 "quay.io/a/b:latest",
		"localhost:5000/x:1":          "localhost:5000/x:1",
		"sha256:0123456789abcdef0123": "0123456789abcdef0123",
		"0123456789ab":                "0123456789ab",
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a b"} {
		if _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
}

func TestAddRemoveListMatch(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := Add(db, "alpine", now); err != nil {
		t.Fatal(err)
	}
	if p, _ := Add(db, "docker.io/library/alpine:latest", now.Add(time.Hour)); !p.Created.Equal(now) {
		t.Errorf("re-pin changed the date: %v", p.Created)
	}
	if _, err := Add(db, "0123456789abcdef", now); err != nil {
		t.Fatal(err)
	}
	ps, err := List(db)
	if err != nil || len(ps) != 2 {
		t.Fatalf("List = %v, %v", ps, err)
	}
	s := NewSet(ps)
	if s.Match("ffff", []string{"docker.io/library/alpine:latest"}) == "" {
		t.Error("name pin did not match")
	}
	if s.Match("0123456789abcdef0000", nil) == "" {
		t.Error("ID prefix pin did not match")
	}
	if s.Match("ffff", []string{"docker.io/library/alpine:3"}) != "" {
		t.Error("pin matched another tag")
	}
	if err := Remove(db, "alpine:latest"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(db, "alpine"); !errors.Is(err, ErrNotPinned) {
		t.Fatalf("second unpin: %v", err)
	}
	if ps, _ := List(db); len(ps) != 1 {
		t.Fatalf("after unpin: %v", ps)
	}
}

// TestDamagedStateKeepsPinsUnreadable (issue 12 item 3): an emptied state
// database used to be initialised afresh, so the pins read as none and the
// next prune removed the pinned images. Reading or adding pins now fails
// with ErrCorrupt and the file is left alone.
func TestDamagedStateKeepsPinsUnreadable(t *testing.T) {
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Add(db, "alpine", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db.Path(), 0); err != nil {
		t.Fatal(err)
	}
	if ps, err := List(db); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("List = %v, %v; want ErrCorrupt", ps, err)
	}
	if _, err := Add(db, "busybox", time.Now()); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("Add: err = %v, want ErrCorrupt", err)
	}
	if fi, err := os.Stat(db.Path()); err != nil || fi.Size() != 0 {
		t.Fatalf("the damaged file was replaced: %v, %v", fi, err)
	}
}
