// Package state is stowage's persistent state: one bbolt database shared by
// the daemon, job workers and the CLI. bbolt takes an exclusive flock for a
// writable open, so every caller opens, runs one short transaction and
// closes; a kill -9 at any moment leaves the file valid (copy-on-write pages,
// fsync on commit).
//
// A file that is not a valid database (empty, truncated, overwritten) is
// never replaced or repaired: every use fails with an error wrapping
// ErrCorrupt that names the file and the way out. bbolt memory-maps the file
// and trusts it, so a damaged file would crash the process (SIGBUS past the
// end of a truncated file, assertion panics on garbage pages); the file is
// therefore checked before bbolt maps it (see check.go) and every bbolt call
// runs with memory faults and panics turned into errors.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
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

// ErrCorrupt is wrapped by every error about a state database file that
// exists but is not a valid database. Nothing is written to such a file.
var ErrCorrupt = errors.New("not a valid state database")

// CorruptError is a state database file that is not a valid database.
type CorruptError struct {
	Path   string // the database file
	Reason string // what is wrong with it
}

// Error names the file, what is wrong and the way out.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("state: %s is %v (%s); pins, last-use records and job history cannot be read and nothing was changed; "+
		"move it away to start afresh: mv %s %s.bad", e.Path, ErrCorrupt, e.Reason, e.Path, e.Path)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

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

// Check reports whether the database file is usable: nil when it is valid
// or does not exist yet (it is created on first use), an error wrapping
// ErrCorrupt when it is damaged.
func (d *DB) Check() error {
	if _, err := os.Lstat(d.path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return d.View("", func(*bolt.Bucket) error { return nil })
}

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

// create makes a fresh database at d.path when there is none. It is built
// under a temporary name and linked into place, so no process ever sees a
// half-created file under d.path (an empty state.db is damage, not a
// database being created) and an existing file is never replaced.
func (d *DB) create() error {
	if _, err := os.Lstat(d.path); !errors.Is(err, os.ErrNotExist) {
		return nil // present (checked by the caller) or unreadable (bolt.Open says why)
	}
	f, err := os.CreateTemp(filepath.Dir(d.path), "."+FileName+".new-*")
	if err != nil {
		return fmt.Errorf("state: creating %s: %w", d.path, err)
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("state: creating %s: %w", d.path, err)
	}
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("state: creating %s: %w", d.path, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("state: creating %s: %w", d.path, err)
	}
	if err := os.Link(tmp, d.path); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("state: creating %s: %w", d.path, err)
	}
	return nil
}

// with opens the database (creating it when missing), verifies it and runs
// fn on it; the database is closed when fn returns. Memory faults and bbolt
// panics while the file is mapped become errors wrapping ErrCorrupt.
func (d *DB) with(readOnly bool, fn func(db *bolt.DB) error) (err error) {
	if err := d.create(); err != nil {
		return err
	}
	if err := checkFile(d.path); err != nil {
		return err
	}
	// Faults (SIGBUS on a page past the end of a file truncated since the
	// check) panic instead of killing the process; the panic is recovered
	// below. bbolt's managed transactions roll back on a panic, releasing
	// their locks, so the deferred Close does not hang.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var (
		db   *bolt.DB
		file *os.File // the database file, while bolt.Open runs
	)
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if db != nil {
			closeQuietly(db)
		} else if file != nil {
			// bolt.Open panicked holding the file and its flock.
			file.Close()
		}
		// The file may have been damaged since the check: the check again
		// says best what is wrong.
		if cerr := checkFile(d.path); errors.Is(cerr, ErrCorrupt) {
			err = cerr
			return
		}
		// A memory fault or one of bbolt's own panics (strings such as
		// "assertion failed: ...") is the file's doing; anything else is
		// a bug in the caller, which must not be mistaken for a damaged
		// file that the error would tell the user to move away.
		if !fromFile(r) {
			panic(r)
		}
		err = &CorruptError{Path: d.path, Reason: fmt.Sprintf("reading it failed: %v", r)}
	}()
	db, err = bolt.Open(d.path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		}})
	if err != nil {
		if isFormatError(err) {
			return &CorruptError{Path: d.path, Reason: err.Error()}
		}
		return fmt.Errorf("state: opening %s: %w", d.path, err)
	}
	if err := verify(db); err != nil {
		closeQuietly(db)
		return &CorruptError{Path: d.path, Reason: err.Error()}
	}
	err = fn(db)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("state: closing %s: %w", d.path, cerr)
	}
	return err
}

// fromFile reports whether a recovered panic value is a memory fault
// (runtime errors of faults carry the address) or a bbolt panic (a string).
func fromFile(r any) bool {
	if _, ok := r.(interface{ Addr() uintptr }); ok {
		return true
	}
	_, ok := r.(string)
	return ok
}

// closeQuietly closes db after a failure; a panic while closing a damaged
// database is dropped (the error being returned already says what is wrong).
func closeQuietly(db *bolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// Update runs fn in one write transaction on the named bucket (created if
// missing). The transaction commits only if fn returns nil.
func (d *DB) Update(bucket string, fn func(b *bolt.Bucket) error) error {
	return d.with(false, func(db *bolt.DB) error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte(bucket))
			if err != nil {
				return fmt.Errorf("state: bucket %s: %w", bucket, err)
			}
			return fn(b)
		})
	})
}

// View runs fn in a read transaction; b is nil when the bucket does not exist.
func (d *DB) View(bucket string, fn func(b *bolt.Bucket) error) error {
	return d.with(true, func(db *bolt.DB) error {
		return db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket([]byte(bucket))) })
	})
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
