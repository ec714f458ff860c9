package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// seeded returns a state directory whose database holds a few buckets and
// keys (one bucket large enough to need its own pages).
func seeded(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update("pins", func(b *bolt.Bucket) error {
		return PutJSON(b, "docker.io/library/alpine:latest", map[string]string{"ref": "docker.io/library/alpine:latest"})
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update("big", func(b *bolt.Bucket) error {
		for i := range 2000 {
			if err := b.Put([]byte(strings.Repeat("k", 20)+string(rune('a'+i%26))+string(rune(i))), []byte(strings.Repeat("v", 100))); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestValidDatabaseChecks: a database stowage wrote passes the check and
// keeps its content.
func TestValidDatabaseChecks(t *testing.T) {
	db := seeded(t)
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := db.View("pins", func(b *bolt.Bucket) error { return GetJSON(b, "docker.io/library/alpine:latest", &got) }); err != nil {
		t.Fatal(err)
	}
	if got["ref"] == "" {
		t.Fatalf("pin lost: %v", got)
	}
}

// TestMissingDatabaseIsCreated: no file yet means a fresh database, and no
// temporary file is left behind.
func TestMissingDatabaseIsCreated(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View("pins", func(b *bolt.Bucket) error { return nil }); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != FileName {
		t.Fatalf("directory holds %v", ents)
	}
	if err := db.Check(); err != nil {
		t.Fatal(err)
	}
}

// assertCorrupt checks that reading and writing db both fail with an error
// naming the file and the way out, and that the file is left as it was.
func assertCorrupt(t *testing.T, db *DB) {
	t.Helper()
	before, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	errs := map[string]error{
		"check":  db.Check(),
		"view":   db.View("pins", func(*bolt.Bucket) error { return nil }),
		"update": db.Update("pins", func(b *bolt.Bucket) error { return b.Put([]byte("k"), []byte("v")) }),
	}
	for op, err := range errs {
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", op, err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, db.Path()) || !strings.Contains(msg, "mv "+db.Path()+" "+db.Path()+".bad") {
			t.Errorf("%s: error does not name the file and the way out: %v", op, msg)
		}
	}
	after, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("the damaged file was changed (%d bytes, was %d)", len(after), len(before))
	}
}

// TestEmptyDatabaseIsNotReinitialised (issue 12 item 3): a 0-byte state.db
// used to be initialised afresh, silently dropping every pin.
func TestEmptyDatabaseIsNotReinitialised(t *testing.T) {
	db := seeded(t)
	if err := os.Truncate(db.Path(), 0); err != nil {
		t.Fatal(err)
	}
	assertCorrupt(t, db)
}

// TestGarbageDatabase: a file of other content is refused.
func TestGarbageDatabase(t *testing.T) {
	db, _ := Open(t.TempDir())
	if err := os.WriteFile(db.Path(), []byte(strings.Repeat("not a database\n", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	assertCorrupt(t, db)
}

// TestTruncatedDatabase (issue 12 item 6): a database cut short used to
// crash the process with SIGBUS when bbolt read the pages past the end.
func TestTruncatedDatabase(t *testing.T) {
	for _, keep := range []string{"half", "pagealigned", "odd"} {
		t.Run(keep, func(t *testing.T) {
			db := seeded(t)
			fi, err := os.Stat(db.Path())
			if err != nil {
				t.Fatal(err)
			}
			size := fi.Size() / 2
			switch keep {
			case "pagealigned":
				size = int64(os.Getpagesize()) * 4
			case "odd":
				size = fi.Size() - 100
			}
			if err := os.Truncate(db.Path(), size); err != nil {
				t.Fatal(err)
			}
			assertCorrupt(t, db)
		})
	}
}

// TestDamagedPage: a page overwritten with garbage (a bad page id makes
// bbolt panic "assertion failed: Page expected to be") is refused.
func TestDamagedPage(t *testing.T) {
	db := seeded(t)
	b, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	for i := 2 * ps; i < len(b); i++ {
		b[i] = byte(i*7 + 3)
	}
	if err := os.WriteFile(db.Path(), b, 0o600); err != nil {
		t.Fatal(err)
	}
	assertCorrupt(t, db)
}

// TestSpecialFileDatabase: a FIFO as state.db neither hangs nor is replaced.
func TestSpecialFileDatabase(t *testing.T) {
	dir := t.TempDir()
	db, _ := Open(dir)
	if err := syscallMkfifo(filepath.Join(dir, FileName)); err != nil {
		t.Skip(err)
	}
	err := db.View("pins", func(*bolt.Bucket) error { return nil })
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}
