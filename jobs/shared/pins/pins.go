// Package pins keeps the images a user pinned with `stowage pin REF`: the
// prune job never removes an image matching a pin. Pins live in the shared
// state database, so the CLI, the daemon and job workers see the same set.
package pins

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy/imageref"
)

// Bucket is the state database bucket holding the pins.
const Bucket = "pins"

// ErrNotPinned is returned by Remove when the reference was not pinned.
var ErrNotPinned = errors.New("pins: not pinned")

// Pin is one pinned reference or image ID.
type Pin struct {
	Ref     string    `json:"ref"`
	Created time.Time `json:"created"`
}

// Normalize returns the canonical form of a pin: a full image ID (64 hex
// digits, "sha256:" stripped) or an ID prefix of at least 12 hex digits stays
// as it is; anything else must parse as an image reference and is written
// fully qualified with ":latest" added when it has neither tag nor digest
// (docker.io/library/alpine:latest), the way image names are stored.
func Normalize(ref string) (string, error) {
	ref = strings.TrimSpace(ref)
	if id := strings.TrimPrefix(ref, "sha256:"); imageref.IsIDPrefix(id) {
		return id, nil
	}
	n, err := imageref.Normalize(ref)
	if err != nil {
		return "", fmt.Errorf("pins: %q is neither an image ID nor a reference: %w", ref, err)
	}
	return n, nil
}

// Add pins ref (normalized first); pinning twice keeps the first date.
func Add(db *state.DB, ref string, now time.Time) (Pin, error) {
	n, err := Normalize(ref)
	if err != nil {
		return Pin{}, err
	}
	p := Pin{Ref: n, Created: now.UTC()}
	err = db.Update(Bucket, func(b *bolt.Bucket) error {
		var old Pin
		if err := state.GetJSON(b, n, &old); err == nil {
			p = old
			return nil
		}
		return state.PutJSON(b, n, p)
	})
	return p, err
}

// Remove unpins ref; ErrNotPinned if it was not pinned.
func Remove(db *state.DB, ref string) error {
	n, err := Normalize(ref)
	if err != nil {
		return err
	}
	return db.Update(Bucket, func(b *bolt.Bucket) error {
		if b.Get([]byte(n)) == nil {
			return fmt.Errorf("%s: %w", n, ErrNotPinned)
		}
		return b.Delete([]byte(n))
	})
}

// List returns every pin, sorted by reference.
func List(db *state.DB) ([]Pin, error) {
	var out []Pin
	err := db.View(Bucket, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			var p Pin
			if err := state.GetJSON(b, string(k), &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, err
}

// Set is a lookup of pins against image records.
type Set struct {
	refs map[string]bool
	ids  []string
}

// NewSet builds a Set from normalized pins.
func NewSet(ps []Pin) *Set {
	s := &Set{refs: map[string]bool{}}
	for _, p := range ps {
		if imageref.IsIDPrefix(p.Ref) {
			s.ids = append(s.ids, p.Ref)
		} else {
			s.refs[p.Ref] = true
		}
	}
	return s
}

// Match returns the pin that protects an image with this ID and these names,
// or "" when none does.
func (s *Set) Match(id string, names []string) string {
	if s == nil {
		return ""
	}
	for _, p := range s.ids {
		if strings.HasPrefix(id, p) {
			return p
		}
	}
	for _, n := range names {
		if s.refs[n] {
			return n
		}
		// Stored names are normally fully qualified already; normalize
		// anyway so "alpine" stored by an old tool still matches.
		if nn, err := Normalize(n); err == nil && s.refs[nn] {
			return nn
		}
	}
	return ""
}
