// Package state is stowage's persistent state: one bbolt database shared by
// the daemon, job workers and the CLI. bbolt takes an exclusive flock for a
// writable open, so every caller opens, runs one short transaction and
// closes; a kill -9 at any moment leaves the file valid (copy-on-write pages,
// fsync on commit).
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the database file inside the state directory.
const FileName = "state.db"

// lockTimeout bounds how long a caller waits for another process's
// transaction; transactions are short, so this only trips on a hung peer.
const lockTimeout = 30 * time.Second

// ErrNotFound is returned by Get when the key does not exist.
var ErrNotFound = errors.New("state: not found")

// DB is a handle on the state directory; it holds no open file between calls.
type DB struct {
	path string
}

// Open prepares the state directory (0700) and returns a handle.
func Open(dir string) (*DB, error) {
	if dir == "" {
		return nil, errors.New("state: no state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: creating %s: %w", dir, err)
	}
	return &DB{path: filepath.Join(dir, FileName)}, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// DefaultDir returns $XDG_STATE_HOME/stowage (or ~/.local/state/stowage) for
// a user and /var/lib/stowage for root.
func DefaultDir(root bool) (string, error) {
	if root {
		return "/var/lib/stowage", nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "stowage"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return filepath.Join(home, ".local", "state", "stowage"), nil
}

func (d *DB) open(readOnly bool) (*bolt.DB, error) {
	if readOnly {
		// A missing file is created; an empty one is still being created by
		// another process, whose lock a writable open waits for.
		if fi, err := os.Stat(d.path); errors.Is(err, os.ErrNotExist) || err == nil && fi.Size() == 0 {
			readOnly = false
		}
	}
	db, err := bolt.Open(d.path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly})
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", d.path, err)
	}
	return db, nil
}

// Update runs fn in one write transaction on the named bucket (created if
// missing). The transaction commits only if fn returns nil.
func (d *DB) Update(bucket string, fn func(b *bolt.Bucket) error) error {
	db, err := d.open(false)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return fmt.Errorf("state: bucket %s: %w", bucket, err)
		}
		return fn(b)
	})
}

// View runs fn in a read transaction; b is nil when the bucket does not exist.
func (d *DB) View(bucket string, fn func(b *bolt.Bucket) error) error {
	db, err := d.open(true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte(bucket))) })
}

// PutJSON stores v as JSON under key in bucket b.
func PutJSON(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encoding %s: %w", key, err)
	}
	return b.Put([]byte(key), data)
}

// GetJSON decodes the JSON stored under key into v; ErrNotFound if absent
// (also when b is nil).
func GetJSON(b *bolt.Bucket, key string, v any) error {
	if b == nil {
		return ErrNotFound
	}
	data := b.Get([]byte(key))
	if data == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("state: decoding %s: %w", key, err)
	}
	return nil
}
