package verify

import (
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
)

// Bucket is the verify job's bucket in the state DB.
const Bucket = "verify"

// recordsKey holds the map reference → Record.
const recordsKey = "names"

// Record is the last definitive verdict on one name.
type Record struct {
	Status  Status    `json:"status"`
	ImageID string    `json:"image_id"`
	Since   time.Time `json:"since"` // when the name entered this status
}

// LoadRecords reads the previous run's verdicts (empty when none).
func LoadRecords(db *state.DB) (map[string]Record, error) {
	recs := map[string]Record{}
	err := db.View(Bucket, func(b *bolt.Bucket) error {
		err := state.GetJSON(b, recordsKey, &recs)
		if errors.Is(err, state.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("verify: loading previous verdicts: %w", err)
	}
	return recs, nil
}

// SaveRecords replaces the stored verdicts.
func SaveRecords(db *state.DB, recs map[string]Record) error {
	if err := db.Update(Bucket, func(b *bolt.Bucket) error { return state.PutJSON(b, recordsKey, recs) }); err != nil {
		return fmt.Errorf("verify: saving verdicts: %w", err)
	}
	return nil
}

// Compare marks each result changed or not against prev and returns the
// records to store next and the events to report:
//   - a failing name that was not failing before (or never seen) →
//     signature_rejected, once: the next run finds it failing already;
//   - an accepted name that was failing → signature_recovered;
//   - an error keeps the previous record, so a transient error neither
//     reports a recovery nor forgets a rejection.
//
// Names no longer in the store are dropped.
func Compare(prev map[string]Record, results []Result, now time.Time) ([]Result, map[string]Record, []report.Event) {
	next := make(map[string]Record, len(results))
	var events []report.Event
	out := make([]Result, len(results))
	for i, r := range results {
		p, seen := prev[r.Reference]
		if seen {
			r.Previous = p.Status
		}
		switch {
		case r.Status == StatusError:
			r.Changed = seen && p.Status != StatusError
			if seen {
				next[r.Reference] = p
			}
			out[i] = r
			continue
		case seen:
			r.Changed = p.Status != r.Status
		default:
			r.Changed = r.Status.Failing()
		}
		rec := Record{Status: r.Status, ImageID: r.ImageID, Since: now}
		if seen && p.Status == r.Status {
			rec.Since = p.Since
		}
		next[r.Reference] = rec
		wasFailing := seen && p.Status.Failing()
		switch {
		case r.Status.Failing() && !wasFailing:
			events = append(events, report.Event{
				Kind:      report.EventSignatureRejected,
				Severity:  report.SeverityCritical,
				Message:   fmt.Sprintf("%s (image %s) is %s by the trust policy: %s", r.Reference, short(r.ImageID), verb(r.Status), r.Reason),
				Topic:     "verify:" + r.Reference,
				Image:     r.ImageID,
				Reference: r.Reference,
			})
		case r.Status == StatusAccepted && wasFailing:
			events = append(events, report.Event{
				Kind:      report.EventSignatureRecovered,
				Severity:  report.SeverityNormal,
				Message:   fmt.Sprintf("%s (image %s) passes the trust policy again (%s)", r.Reference, short(r.ImageID), r.Reason),
				Topic:     "verify:" + r.Reference,
				Image:     r.ImageID,
				Reference: r.Reference,
			})
		}
		out[i] = r
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].Reference < events[j].Reference })
	return out, next, events
}

func verb(s Status) string {
	if s == StatusUnsigned {
		return "unsigned, so rejected"
	}
	return string(s)
}
