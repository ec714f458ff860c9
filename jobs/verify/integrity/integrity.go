// Package integrity re-hashes image layers on disk and compares each with the
// uncompressed digest the store recorded when the layer was applied. The
// original tar stream is reproduced from the layer's tar-split metadata and
// its files (as containers/storage's Diff does), streamed through the hash
// with a fixed buffer and an optional rate cap.
package integrity

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	tsstorage "github.com/vbatts/tar-split/tar/storage"
	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"
)

// Layer statuses.
const (
	StatusOK        = "ok"
	StatusCorrupted = "corrupted"
	StatusError     = "error"
	StatusSkipped   = "skipped"
)

// bufSize is the one read buffer a scan uses: memory stays flat whatever
// the layer size.
const bufSize = 1 << 20

// Result is the verdict on one layer.
type Result struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	ExpectedDigest string `json:"expected_digest"`
	ActualDigest   string `json:"actual_digest,omitempty"`
	// Bytes is the length of the reproduced uncompressed stream.
	Bytes int64 `json:"bytes"`
	// Files whose content no longer matches the checksum recorded at
	// extraction (only located for corrupted layers).
	Files  []string `json:"files,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Images lists the IDs of images built on this layer.
	Images []string `json:"images,omitempty"`
}

// DiffSource is the part of storage.Store used for drivers whose files this
// package does not know how to find.
type DiffSource interface {
	Diff(from, to string, options *storage.DiffOptions) (io.ReadCloser, error)
}

// Scanner checks layers of one store.
type Scanner struct {
	GraphRoot string
	Driver    string
	// Store serves layers of other drivers through store.Diff (which holds
	// the layer store lock while streaming).
	Store    DiffSource
	Throttle *Throttle
	buf      []byte
}

// Check re-hashes the layer id and compares it with expected. It never
// returns an error: problems are part of the Result. Layers of read-only
// additional stores (readOnly) live elsewhere: they are read through
// store.Diff.
func (s *Scanner) Check(ctx context.Context, id string, expected digest.Digest, readOnly bool) Result {
	r := Result{ID: id, ExpectedDigest: expected.String()}
	if err := expected.Validate(); err != nil {
		r.Status, r.Reason = StatusSkipped, fmt.Sprintf("no usable recorded digest: %v", err)
		return r
	}
	if s.buf == nil {
		s.buf = make([]byte, bufSize)
	}
	h := expected.Algorithm().Hash()
	n, err := s.stream(ctx, id, h, readOnly)
	r.Bytes = n
	switch {
	case errors.Is(err, errNoTarSplit):
		r.Status, r.Reason = StatusSkipped, err.Error()
		return r
	case errors.Is(err, errMissingFile):
		r.Status, r.Reason = StatusCorrupted, err.Error()
		return r
	case err != nil:
		r.Status, r.Reason = StatusError, err.Error()
		return r
	}
	actual := digest.NewDigest(expected.Algorithm(), h)
	r.ActualDigest = actual.String()
	if actual == expected {
		r.Status = StatusOK
		return r
	}
	r.Status, r.Reason = StatusCorrupted, "uncompressed digest differs from the recorded one"
	if files, err := s.locate(ctx, id); err == nil {
		r.Files = files
	}
	return r
}

var (
	errNoTarSplit  = errors.New("no tar-split metadata: the original stream cannot be reproduced")
	errMissingFile = errors.New("file missing from the layer")
)

func (s *Scanner) tarSplitPath(id string) string {
	return filepath.Join(s.GraphRoot, s.Driver+"-layers", id+".tar-split.gz")
}

// filesDir is where the driver keeps the layer's own files; "" if unknown.
func (s *Scanner) filesDir(id string) string {
	switch s.Driver {
	case "vfs":
		return filepath.Join(s.GraphRoot, "vfs", "dir", id)
	case "overlay", "overlay2":
		return filepath.Join(s.GraphRoot, "overlay", id, "diff")
	}
	return ""
}

// stream writes the reproduced layer tar into h and returns its length.
func (s *Scanner) stream(ctx context.Context, id string, h hash.Hash, readOnly bool) (int64, error) {
	dir := s.filesDir(id)
	if dir == "" || readOnly {
		return s.streamDiff(ctx, id, h, readOnly)
	}
	var n int64
	err := s.walk(ctx, id, dir, func(b []byte) error {
		n += int64(len(b))
		_, err := h.Write(b)
		return err
	}, nil)
	return n, err
}

// streamDiff uses store.Diff for drivers whose layout is not known here
// and for read-only layers. Without tar-split metadata Diff would build a
// new tar whose digest never matches: such layers are skipped, not flagged.
func (s *Scanner) streamDiff(ctx context.Context, id string, h hash.Hash, readOnly bool) (int64, error) {
	if _, err := os.Stat(s.tarSplitPath(id)); !readOnly && errors.Is(err, fs.ErrNotExist) {
		return 0, errNoTarSplit
	}
	if s.Store == nil {
		return 0, fmt.Errorf("driver %q: no store to read the layer from", s.Driver)
	}
	unc := archive.Uncompressed
	rc, err := s.Store.Diff("", id, &storage.DiffOptions{Compression: &unc})
	if err != nil {
		return 0, fmt.Errorf("reading layer diff: %w", err)
	}
	defer rc.Close()
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := rc.Read(s.buf)
		if m > 0 {
			n += int64(m)
			h.Write(s.buf[:m])
			if err := s.Throttle.Wait(ctx, m); err != nil {
				return n, err
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("reading layer diff: %w", rerr)
		}
	}
}

// walk replays the tar-split metadata: raw tar segments go to emit as they
// are; each file's payload is read from dir and emitted. onFile, when set,
// is called after each file with its name and whether its CRC-64 matches
// the one recorded at extraction.
func (s *Scanner) walk(ctx context.Context, id, dir string, emit func([]byte) error, onFile func(name string, ok bool)) error {
	tsf, err := os.Open(s.tarSplitPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return errNoTarSplit
	}
	if err != nil {
		return fmt.Errorf("opening tar-split: %w", err)
	}
	defer tsf.Close()
	zr, err := gzip.NewReader(tsf)
	if err != nil {
		return fmt.Errorf("reading tar-split: %w", err)
	}
	defer zr.Close()
	up := tsstorage.NewJSONUnpacker(zr)
	var crc hash.Hash64
	if onFile != nil {
		crc = crc64.New(tsstorage.CRCTable)
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := up.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar-split: %w", err)
		}
		switch e.Type {
		case tsstorage.SegmentType:
			if err := emit(e.Payload); err != nil {
				return err
			}
		case tsstorage.FileType:
			if e.Size == 0 {
				continue
			}
			name := e.GetName()
			// Confine the name to the layer directory.
			f, err := os.Open(filepath.Join(dir, filepath.Clean("/"+name)))
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s", errMissingFile, name)
			}
			if err != nil {
				return fmt.Errorf("opening %s: %w", name, err)
			}
			if crc != nil {
				crc.Reset()
			}
			err = s.copyFile(ctx, f, emit, crc)
			f.Close()
			if err != nil {
				return fmt.Errorf("reading %s: %w", name, err)
			}
			if onFile != nil {
				onFile(name, bytes.Equal(crc.Sum(nil), e.Payload))
			}
		}
	}
}

func (s *Scanner) copyFile(ctx context.Context, f *os.File, emit func([]byte) error, crc hash.Hash64) error {
	for {
		m, rerr := f.Read(s.buf)
		if m > 0 {
			if err := emit(s.buf[:m]); err != nil {
				return err
			}
			if crc != nil {
				crc.Write(s.buf[:m])
			}
			if err := s.Throttle.Wait(ctx, m); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// locate names the files of a corrupted layer whose content changed, using
// the per-file CRC-64 that tar-split recorded. It is a second pass, run only
// for layers already found corrupted, so clean scans pay for SHA-256 alone.
func (s *Scanner) locate(ctx context.Context, id string) ([]string, error) {
	dir := s.filesDir(id)
	if dir == "" {
		return nil, errors.New("driver layout unknown")
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	var bad []string
	err := s.walk(ctx, id, dir, func([]byte) error { return nil }, func(name string, ok bool) {
		if !ok {
			bad = append(bad, name)
		}
	})
	return bad, err
}
