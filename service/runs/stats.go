package runs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/api"
)

// bucketStats holds one Stats per job: the counters behind the daemon's
// Prometheus counters. They live in the state database, not in the daemon
// (which exits when idle), so they never go backwards except when the
// database is reset.
const bucketStats = "daemon.stats"

// DurationBuckets are the upper bounds (seconds) of the run duration
// histogram kept in Stats. Changing them resets nothing but mislabels the
// stored counts: append only.
var DurationBuckets = []float64{0.1, 0.4, 1.6, 6.4, 25.6, 102.4, 409.6, 1638.4, 6553.6, 26214.4}

// Stats are a job's accumulated run counters (finished, non-dry runs).
type Stats struct {
	// Runs counts runs by outcome.
	Runs map[api.Outcome]uint64 `json:"runs"`
	// DurationCount and DurationSum (seconds) are the run duration
	// histogram's count and sum; DurationBuckets[i] counts runs of at most
	// DurationBuckets[i] seconds (cumulative, as Prometheus keeps them).
	DurationCount   uint64   `json:"duration_count"`
	DurationSum     float64  `json:"duration_sum"`
	DurationBuckets []uint64 `json:"duration_buckets"`
	// LastSuccess is when the job's last successful run finished.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// FreedBytes sums the freed_bytes metric of the job's reports.
	FreedBytes float64 `json:"freed_bytes,omitempty"`
	// Metrics are the report metrics of the job's last run that printed a
	// report, and MetricsRun that run's id: a run that crashed before
	// reporting leaves the last known figures in place.
	Metrics    map[string]float64 `json:"metrics,omitempty"`
	MetricsRun string             `json:"metrics_run,omitempty"`
}

// add accounts one finished run. Pure.
func (st *Stats) add(r *api.Run, c *report.Common) {
	if st.Runs == nil {
		st.Runs = map[api.Outcome]uint64{}
	}
	st.Runs[r.Outcome]++
	if len(st.DurationBuckets) != len(DurationBuckets) {
		st.DurationBuckets = append(st.DurationBuckets, make([]uint64, len(DurationBuckets)-len(st.DurationBuckets))...)
	}
	d := r.Duration().Seconds()
	st.DurationCount++
	st.DurationSum += d
	for i, ub := range DurationBuckets {
		if d <= ub {
			st.DurationBuckets[i]++
		}
	}
	if r.Outcome == api.OutcomeSucceeded && r.Finished.After(st.LastSuccess) {
		st.LastSuccess = r.Finished
	}
	if c != nil {
		if v := c.Metrics["freed_bytes"]; v > 0 {
			st.FreedBytes += v
		}
		st.Metrics, st.MetricsRun = c.Metrics, r.ID
	}
}

// commonOf is the run's parsed report envelope: r.Common, else parsed
// from r.Report (nil when there is none).
func commonOf(r *api.Run) *report.Common {
	if r.Common != nil {
		return r.Common
	}
	if len(r.Report) == 0 {
		return nil
	}
	var c report.Common
	if json.Unmarshal(r.Report, &c) != nil {
		return nil
	}
	return &c
}

// addStats accounts r in the stats bucket of tx (finished, non-dry runs).
func addStats(tx *bolt.Tx, r *api.Run) error {
	b, err := tx.CreateBucketIfNotExists([]byte(bucketStats))
	if err != nil {
		return fmt.Errorf("state: bucket %s: %w", bucketStats, err)
	}
	var st Stats
	if err := state.GetJSON(b, r.Job, &st); err != nil && !errors.Is(err, state.ErrNotFound) {
		return err
	}
	st.add(r, commonOf(r))
	return state.PutJSON(b, r.Job, &st)
}

// Stats returns every job's accumulated counters.
func (s *Store) Stats() (map[string]Stats, error) {
	out := map[string]Stats{}
	if _, err := os.Stat(s.db.Path()); errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	err := s.db.View(bucketStats, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(job, _ []byte) error {
			var st Stats
			if err := state.GetJSON(b, string(job), &st); err != nil {
				return err
			}
			out[string(job)] = st
			return nil
		})
	})
	return out, err
}
