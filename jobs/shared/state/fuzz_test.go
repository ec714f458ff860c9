package state

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func syscallMkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// FuzzOpen writes random bytes as the state database and reads and writes
// it: the process must never fault or panic; the result is either an error
// or a database that then passes the check again.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	db, err := Open(dir)
	if err != nil {
		f.Fatal(err)
	}
	if err := db.Update("pins", func(b *bolt.Bucket) error { return b.Put([]byte("k"), []byte("v")) }); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(db.Path())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Add(valid[:2*os.Getpagesize()])
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(d.Path()), FileName), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d.View("pins", func(b *bolt.Bucket) error {
			if b != nil {
				return b.ForEach(func(k, v []byte) error { return nil })
			}
			return nil
		}); err != nil {
			return
		}
		if err := d.Update("pins", func(b *bolt.Bucket) error { return b.Put([]byte("x"), []byte("y")) }); err != nil {
			return
		}
		if err := d.Check(); err != nil {
			t.Fatalf("a database that took a write no longer checks: %v", err)
		}
	})
}
