// Package runs persists the daemon's run records (with each worker's full
// report) and every job's last run in the shared state database.
package runs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
)

// Buckets in the state database.
const (
	bucketRuns = "daemon.runs" // run id -> api.Run
	bucketLast = "daemon.last" // job -> run id of its last finished run
)

// DefaultKeep is how many runs per job are kept.
const DefaultKeep = 50

// ErrNotFound is returned for an unknown run or a job without runs.
var ErrNotFound = errors.New("run not found")

// Store reads and writes run records.
type Store struct {
	db   *state.DB
	keep int
}

// New returns a store keeping keep runs per job (DefaultKeep if <= 0).
func New(db *state.DB, keep int) *Store {
	if keep <= 0 {
		keep = DefaultKeep
	}
	return &Store{db: db, keep: keep}
}

// NewID returns a run id that sorts by start time: 20060102T150405.000Z-job-xxxx.
func NewID(job string, t time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return t.UTC().Format("20060102T150405.000Z") + "-" + job + "-" + hex.EncodeToString(b[:])
}

// Put stores r; a finished, non-dry run also becomes its job's last run
// and is counted in its Stats (in the same transaction).
// Old runs beyond the retention are dropped.
func (s *Store) Put(r *api.Run) error {
	return s.db.Update(bucketRuns, func(b *bolt.Bucket) error {
		if err := state.PutJSON(b, r.ID, r); err != nil {
			return err
		}
		if r.Outcome.Done() && !r.DryRun {
			last, err := b.Tx().CreateBucketIfNotExists([]byte(bucketLast))
			if err != nil {
				return fmt.Errorf("state: bucket %s: %w", bucketLast, err)
			}
			if err := last.Put([]byte(r.Job), []byte(r.ID)); err != nil {
				return err
			}
			if err := addStats(b.Tx(), r); err != nil {
				return err
			}
		}
		return s.trim(b, r.Job)
	})
}

// trim deletes the oldest runs of job beyond the retention.
func (s *Store) trim(b *bolt.Bucket, job string) error {
	var ids [][]byte
	c := b.Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		if jobOf(k) == job {
			ids = append(ids, bytes.Clone(k))
		}
	}
	for _, k := range ids[min(len(ids), s.keep):] {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// jobOf extracts the job name from a run id.
func jobOf(id []byte) string {
	_, rest, ok := bytes.Cut(id, []byte("-"))
	if !ok {
		return ""
	}
	i := bytes.LastIndexByte(rest, '-')
	if i < 0 {
		return ""
	}
	return string(rest[:i])
}

// Get returns one run.
func (s *Store) Get(id string) (*api.Run, error) {
	var r api.Run
	err := s.db.View(bucketRuns, func(b *bolt.Bucket) error { return state.GetJSON(b, id, &r) })
	if errors.Is(err, state.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Last returns each job's last finished (non-dry) run.
func (s *Store) Last() (map[string]*api.Run, error) {
	out := map[string]*api.Run{}
	if _, err := os.Stat(s.db.Path()); errors.Is(err, os.ErrNotExist) {
		return out, nil // first start: no need to create (and fsync) the file yet
	}
	err := s.db.View(bucketRuns, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		last := b.Tx().Bucket([]byte(bucketLast))
		if last == nil {
			return nil
		}
		return last.ForEach(func(job, id []byte) error {
			var r api.Run
			if err := state.GetJSON(b, string(id), &r); err != nil {
				if errors.Is(err, state.ErrNotFound) {
					return nil
				}
				return err
			}
			out[string(job)] = &r
			return nil
		})
	})
	return out, err
}

// History returns up to limit runs, newest first; job "" means all jobs.
func (s *Store) History(job string, limit int) ([]*api.Run, error) {
	var out []*api.Run
	err := s.db.View(bucketRuns, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.Last(); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Prev() {
			if job != "" && jobOf(k) != job {
				continue
			}
			r := new(api.Run)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("state: decoding run %s: %w", k, err)
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// Latest returns job's newest run of any kind (dry runs included).
func (s *Store) Latest(job string) (*api.Run, error) {
	h, err := s.History(job, 1)
	if err != nil {
		return nil, err
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: no runs of %s", ErrNotFound, job)
	}
	return h[0], nil
}
