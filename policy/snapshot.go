package policy

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Snapshot is a loaded policy together with the documents it was parsed
// from, as they were read. The daemon hands a snapshot to each worker it
// starts, so a run uses exactly the policy the daemon has in force — never
// a file edited (or broken) since the last reload.
type Snapshot struct {
	Policy *Policy
	// Sources are the policy file and its drop-ins as read, in the order
	// they apply (the embedded default is not included: it is part of the
	// binary).
	Sources []Source
}

// Files names the sources in force, the embedded default first.
func (s *Snapshot) Files() []string {
	names := []string{EmbeddedSource}
	for _, src := range s.Sources {
		names = append(names, src.Name)
	}
	return names
}

// snapshotVersion is the wire format of Encode.
const snapshotVersion = 1

type wireSnapshot struct {
	Format  int          `json:"format"`
	Sources []wireSource `json:"sources"`
}

type wireSource struct {
	Name string `json:"name"`
	Data []byte `json:"data"`
}

// Encode serializes the snapshot's sources (JSON). DecodeSnapshot parses
// them again over the same embedded default, which yields the same policy.
func (s *Snapshot) Encode() ([]byte, error) {
	w := wireSnapshot{Format: snapshotVersion, Sources: make([]wireSource, 0, len(s.Sources))}
	for _, src := range s.Sources {
		w.Sources = append(w.Sources, wireSource{Name: src.Name, Data: src.Data})
	}
	data, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encoding policy snapshot: %w", err)
	}
	return data, nil
}

// ErrSnapshot wraps every failure to decode a policy snapshot.
var ErrSnapshot = errors.New("invalid policy snapshot")

// DecodeSnapshot parses a snapshot written by Encode. It never reads a file.
func DecodeSnapshot(data []byte) (*Snapshot, error) {
	var w wireSnapshot
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	if w.Format != snapshotVersion {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrSnapshot, w.Format, snapshotVersion)
	}
	s := &Snapshot{Sources: make([]Source, 0, len(w.Sources))}
	for _, src := range w.Sources {
		s.Sources = append(s.Sources, Source{Name: src.Name, Data: src.Data})
	}
	p, err := Parse(s.Sources...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	s.Policy = p
	return s, nil
}
