// Package lastuse is stowage's persistent record of when each image was last
// used. containers/storage keeps no such time, so stowage records it: the
// images of the containers present at each scan, and podman's container
// create/start events since the previous scan (the only trace a
// `podman run --rm` leaves). The record lives in the shared bbolt state
// database; every update is one transaction that only moves times forward,
// so concurrent writers (daemon, job workers, CLI) merge and a kill -9 at any
// moment leaves the previous valid record.
package lastuse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/jobs/shared/state"
)

// Bucket is the state database bucket holding the record.
const Bucket = "lastuse"

// Key prefixes inside the bucket.
const (
	idPrefix   = "id/"
	namePrefix = "name/"
	cursorKey  = "cursor/events"
)

// Use is one observation that an image was used at a time. ImageID or Name
// (a reference as podman reported it) identifies the image.
type Use struct {
	ImageID string
	Name    string
	At      time.Time
}

// EventSource lists container create/start events between since and until:
// podman's REST API (PodmanEvents) or its command (PodmanCLI).
type EventSource interface {
	ContainerUses(ctx context.Context, since, until time.Time) ([]Use, error)
}

// Record is the loaded last-use record.
type Record struct {
	ByID   map[string]time.Time
	ByName map[string]time.Time
	// Cursor is the end of the last event scan (zero if none yet).
	Cursor time.Time
}

// Of returns the last recorded use of the image with this ID and names, or
// the zero time when nothing is recorded.
func (r *Record) Of(id string, names []string) time.Time {
	if r == nil {
		return time.Time{}
	}
	t := r.ByID[id]
	for _, n := range names {
		if nt := r.ByName[n]; nt.After(t) {
			t = nt
		}
	}
	return t
}

// Load reads the whole record.
func Load(db *state.DB) (*Record, error) {
	r := &Record{ByID: map[string]time.Time{}, ByName: map[string]time.Time{}}
	err := db.View(Bucket, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalText(v); err != nil {
				// A value we cannot read is ignored, never fatal: the
				// fallback (pull time) is older, so it errs toward keeping.
				return nil
			}
			switch key := string(k); {
			case key == cursorKey:
				r.Cursor = t
			case strings.HasPrefix(key, idPrefix):
				r.ByID[strings.TrimPrefix(key, idPrefix)] = t
			case strings.HasPrefix(key, namePrefix):
				r.ByName[strings.TrimPrefix(key, namePrefix)] = t
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("lastuse: %w", err)
	}
	return r, nil
}

// putMax stores t under key unless a later time is already there.
func putMax(b *bolt.Bucket, key string, t time.Time) error {
	if old := b.Get([]byte(key)); old != nil {
		var ot time.Time
		if ot.UnmarshalText(old) == nil && !t.After(ot) {
			return nil
		}
	}
	v, err := t.UTC().MarshalText()
	if err != nil {
		return fmt.Errorf("lastuse: %w", err)
	}
	return b.Put([]byte(key), v)
}

// Touch merges uses into the record in one transaction; when cursor is not
// zero it also advances the event cursor (never backwards).
func Touch(db *state.DB, uses []Use, cursor time.Time) error {
	return db.Update(Bucket, func(b *bolt.Bucket) error {
		for _, u := range uses {
			if u.At.IsZero() {
				continue
			}
			if u.ImageID != "" {
				if err := putMax(b, idPrefix+u.ImageID, u.At); err != nil {
					return err
				}
			}
			if u.Name != "" {
				if err := putMax(b, namePrefix+u.Name, u.At); err != nil {
					return err
				}
			}
		}
		if !cursor.IsZero() {
			return putMax(b, cursorKey, cursor)
		}
		return nil
	})
}

// Forget drops the records of removed images (by ID; names stay, since a
// later image under the same name inherits their use).
func Forget(db *state.DB, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return db.Update(Bucket, func(b *bolt.Bucket) error {
		for _, id := range ids {
			if err := b.Delete([]byte(idPrefix + id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// maxEventWindow bounds the first event scan: podman's event log may be long.
const maxEventWindow = 30 * 24 * time.Hour

// ErrEvents marks a failed event scan; the container scan was still recorded.
var ErrEvents = errors.New("lastuse: reading podman events")

// Scan records one observation: every image referenced by a container in
// the snapshot is used now, and, when src is not nil, podman's container
// events since the last scan. A failing event source is reported (wrapped
// in ErrEvents) after the container uses are stored, and the cursor stays
// where it was so the next scan retries the same window.
func Scan(ctx context.Context, db *state.DB, snap *layergraph.Snapshot, src EventSource, now time.Time) error {
	uses := make([]Use, 0, len(snap.Containers))
	for _, c := range snap.Containers {
		if c.ImageID != "" {
			uses = append(uses, Use{ImageID: c.ImageID, At: now})
		}
	}
	var evErr error
	var cursor time.Time
	if src != nil {
		rec, err := Load(db)
		if err != nil {
			return err
		}
		since := rec.Cursor
		if since.IsZero() || now.Sub(since) > maxEventWindow {
			since = now.Add(-maxEventWindow)
		}
		evs, err := src.ContainerUses(ctx, since, now)
		if err != nil {
			evErr = fmt.Errorf("%w: %w", ErrEvents, err)
		} else {
			uses = append(uses, normalizeUses(evs, snap)...)
			cursor = now
		}
	}
	if err := Touch(db, uses, cursor); err != nil {
		return err
	}
	return evErr
}

// normalizeUses maps event image names to IDs where the snapshot knows them
// (events name the image as the user typed it: a reference or an ID).
func normalizeUses(evs []Use, snap *layergraph.Snapshot) []Use {
	byName := make(map[string]string, len(snap.Images))
	for _, img := range snap.Images {
		for _, n := range img.Names {
			byName[n] = img.ID
		}
	}
	out := make([]Use, 0, len(evs))
	for _, u := range evs {
		name := strings.TrimPrefix(u.Name, "sha256:")
		if u.ImageID == "" {
			if id, ok := byName[name]; ok {
				u.ImageID = id
			} else if id := matchIDPrefix(snap, name); id != "" {
				u.ImageID, name = id, ""
			}
		}
		u.Name = name
		out = append(out, u)
	}
	return out
}

func matchIDPrefix(snap *layergraph.Snapshot, s string) string {
	if len(s) < 12 {
		return ""
	}
	for _, img := range snap.Images {
		if strings.HasPrefix(img.ID, s) {
			return img.ID
		}
	}
	return ""
}

// PodmanEvents reads container create/start events from podman's REST API.
type PodmanEvents struct {
	Client *podmanapi.Client
}

var _ EventSource = PodmanEvents{}

// ContainerUses implements EventSource.
func (p PodmanEvents) ContainerUses(ctx context.Context, since, until time.Time) ([]Use, error) {
	// No "until" in the request: podman (4.x, file logger) stops reading its
	// event log as soon as a requested "until" has passed, even mid-read, so
	// a window ending in the past comes back with some or none of its
	// events. Read to the end of the log and cut the window here. The API
	// takes whole seconds: since is rounded down (re-reading is harmless).
	evs, err := p.Client.Events(ctx, podmanapi.EventsOptions{Since: since.Truncate(time.Second), Filters: podmanapi.ContainerUseFilters})
	if err != nil {
		return nil, err
	}
	out := make([]Use, 0, len(evs))
	for _, e := range evs {
		if e.Type != "container" || e.Image == "" {
			continue
		}
		if !until.IsZero() && e.Time.After(until) {
			continue // the next scan's window
		}
		out = append(out, Use{Name: e.Image, At: e.Time})
	}
	return out, nil
}
