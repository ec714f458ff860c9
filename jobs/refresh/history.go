package refresh

import (
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/state"
)

// HistoryBucket is the state bucket holding one Record per reference.
const HistoryBucket = "refresh_history"

// Seen is one remote digest observed for a reference.
type Seen struct {
	Digest    string    `json:"digest"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	// Drift is true when the digest differed from the local image when first seen.
	Drift bool `json:"drift"`
}

// Record is the refresh history of one reference.
type Record struct {
	Reference string `json:"reference"`
	Seen      []Seen `json:"seen"`
	// Lists caches, per "listdigest os/arch/variant", the instance chosen
	// from that (immutable) manifest list, so a list changed only for other
	// platforms costs no GET on later runs.
	Lists map[string]string `json:"lists,omitempty"`
	// Newer holds the newer versions reported for this reference (the
	// newer-version check), each once.
	Newer []NewerSeen `json:"newer,omitempty"`
	// NewerChecked is when the repository's tags were last listed for this
	// reference: under a tight budget the least recently listed go first.
	NewerChecked time.Time `json:"newer_checked,omitzero"`
}

// observe records digest at now; it returns true when it was not seen before.
func (r *Record) observe(digest string, drift bool, now time.Time) bool {
	for i := range r.Seen {
		if r.Seen[i].Digest == digest {
			r.Seen[i].LastSeen = now
			return false
		}
	}
	r.Seen = append(r.Seen, Seen{Digest: digest, FirstSeen: now, LastSeen: now, Drift: drift})
	return true
}

// maxLists bounds the list cache of one reference.
const maxLists = 16

// Retention of the refresh history (documented in the README):
const (
	// MaxSeen is how many digests are kept per reference, the most
	// recently seen ones.
	MaxSeen = 32
	// HistoryRetention is how long a reference no run has looked at (its
	// image is gone, or refresh is off for it) keeps its record.
	HistoryRetention = 180 * 24 * time.Hour
)

// trim keeps the MaxSeen most recently seen digests, in their order. Pure.
func (r *Record) trim() {
	if len(r.Seen) <= MaxSeen {
		return
	}
	idx := make([]int, len(r.Seen))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return r.Seen[idx[a]].LastSeen.After(r.Seen[idx[b]].LastSeen) })
	keep := map[int]bool{}
	for _, i := range idx[:MaxSeen] {
		keep[i] = true
	}
	out := r.Seen[:0]
	for i, s := range r.Seen {
		if keep[i] {
			out = append(out, s)
		}
	}
	r.Seen = out
}

// lastSeen is when any digest of the record was last seen.
func (r *Record) lastSeen() time.Time {
	var t time.Time
	for _, s := range r.Seen {
		if s.LastSeen.After(t) {
			t = s.LastSeen
		}
	}
	for _, s := range r.Newer {
		if s.LastSeen.After(t) {
			t = s.LastSeen
		}
	}
	if r.NewerChecked.After(t) {
		t = r.NewerChecked
	}
	return t
}

// expired reports whether a record last seen at last is past the retention
// at now. Pure.
func expired(last, now time.Time) bool {
	return now.Sub(last) > HistoryRetention
}

func listKey(listDigest string, img LocalImage) string {
	return listDigest + " " + img.OS + "/" + img.Architecture + "/" + img.Variant
}

// History reads the record of every reference (or of ref alone when not
// empty), sorted by reference.
func History(db *state.DB, ref string) ([]Record, error) {
	var out []Record
	err := db.View(HistoryBucket, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		if ref != "" {
			var r Record
			err := state.GetJSON(b, ref, &r)
			if errors.Is(err, state.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			out = append(out, r)
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var r Record
			if err := state.GetJSON(b, string(k), &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading refresh history: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reference < out[j].Reference })
	return out, nil
}

// loadRecords reads the records of the given references in one transaction.
func loadRecords(db *state.DB, refs []string) (map[string]*Record, error) {
	recs := make(map[string]*Record, len(refs))
	err := db.View(HistoryBucket, func(b *bolt.Bucket) error {
		for _, ref := range refs {
			r := &Record{Reference: ref}
			if err := state.GetJSON(b, ref, r); err != nil && !errors.Is(err, state.ErrNotFound) {
				return err
			}
			recs[ref] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading refresh history: %w", err)
	}
	return recs, nil
}

// observation is what one run learnt about one reference.
type observation struct {
	ref     string
	digest  string // the digest relevant for the image's platform
	drift   bool
	listKey string // non-empty: cache list → instance
	inst    string
}

// sweep deletes the records past the retention.
func sweep(b *bolt.Bucket, now time.Time) error {
	var old [][]byte
	err := b.ForEach(func(k, _ []byte) error {
		var r Record
		if err := state.GetJSON(b, string(k), &r); err != nil {
			return nil // unreadable: leave it to a human
		}
		if expired(r.lastSeen(), now) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// commit merges the observations into the history in one write transaction
// (dry-run: a read transaction, nothing written) and returns, per reference,
// whether its digest was new. Deciding inside the transaction makes "new"
// exactly-once even when two runs overlap.
func commit(db *state.DB, obs []observation, now time.Time, dryRun bool) (map[string]bool, error) {
	isNew := make(map[string]bool, len(obs))
	merge := func(b *bolt.Bucket, write bool) error {
		for _, o := range obs {
			r := &Record{Reference: o.ref}
			if err := state.GetJSON(b, o.ref, r); err != nil && !errors.Is(err, state.ErrNotFound) {
				return err
			}
			isNew[o.ref] = r.observe(o.digest, o.drift, now)
			if o.listKey != "" {
				if r.Lists == nil || len(r.Lists) >= maxLists {
					r.Lists = map[string]string{} // a cache: dropping it costs one GET later
				}
				r.Lists[o.listKey] = o.inst
			}
			r.trim()
			if write {
				if err := state.PutJSON(b, o.ref, r); err != nil {
					return err
				}
			}
		}
		if write {
			return sweep(b, now)
		}
		return nil
	}
	if err := historyTx(db, dryRun, merge); err != nil {
		return nil, fmt.Errorf("refresh history: %w", err)
	}
	return isNew, nil
}

// Observed is what a refresh run learnt about one reference: the remote
// digest for the image's platform and, for a manifest list, the list key
// (see Record.Lists) with the instance chosen from it.
type Observed struct {
	Reference string
	Digest    string
	Drift     bool
	ListKey   string
	Instance  string
}

// Observe merges observations into the history at now exactly as Run does
// (same transaction, trimming and sweep) and returns, per reference, whether
// its digest was new. It lets a driver without registries, such as the state
// benchmark (test/bench/stategen), exercise the real recording path.
func Observe(db *state.DB, obs []Observed, now time.Time) (map[string]bool, error) {
	in := make([]observation, len(obs))
	for i, o := range obs {
		in[i] = observation{ref: o.Reference, digest: o.Digest, drift: o.Drift, listKey: o.ListKey, inst: o.Instance}
	}
	return commit(db, in, now, false)
}

// historyTx runs merge on the history bucket in one write transaction, or
// read-only (write false) for a dry run, which must leave no trace.
func historyTx(db *state.DB, dryRun bool, merge func(b *bolt.Bucket, write bool) error) error {
	if dryRun {
		return db.View(HistoryBucket, func(b *bolt.Bucket) error { return merge(b, false) })
	}
	return db.Update(HistoryBucket, func(b *bolt.Bucket) error { return merge(b, true) })
}
