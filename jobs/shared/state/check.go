package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// The bbolt v1 file format, as far as checkFile needs it. bbolt writes its
// structures in the machine's byte order.
const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags u32, pos u32, ksize u32, vsize u32
	bucketHeaderSize = 16 // root pgid u64, sequence u64

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaChecksumAt = 56 // the meta checksum covers the 56 bytes before it
	metaSize       = 64
	noFreelist     = ^uint64(0)

	minPageSize = 1 << 9
	maxPageSize = 1 << 16
	// maxDepth bounds bucket and tree nesting; stowage's buckets are one
	// level deep and its trees a few pages high.
	maxDepth = 64
)

var ne = binary.NativeEndian

// meta is a decoded meta page.
type meta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // high water mark: pages [0, pgid) are in use or free
	txid     uint64
}

// checkFile verifies the database file without mapping it: a regular file,
// a valid meta page whose page size and high water mark fit the file, and
// every page reachable from it (the bucket trees and the freelist) inside the
// high water mark, of the expected type, and with its elements inside the
// page. bbolt trusts all of this and faults (SIGBUS) or panics otherwise.
// It runs under a shared flock, so a writer in another process is not
// caught half-way. Problems with the file's content wrap ErrCorrupt.
func checkFile(path string) error {
	// O_NONBLOCK: a FIFO in place of the database must not hang the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("state: opening %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("state: %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return &CorruptError{Path: path, Reason: fmt.Sprintf("not a regular file but %s", fi.Mode().Type())}
	}
	if err := lockShared(f, lockTimeout); err != nil {
		return fmt.Errorf("state: locking %s: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing unlocks too
	if err := checkReader(f); err != nil {
		return &CorruptError{Path: path, Reason: err.Error()}
	}
	return nil
}

// lockShared takes a shared flock on f, waiting up to timeout for a writer.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Now().After(deadline) {
			return berrors.ErrTimeout
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// file is what checkReader reads: the database's bytes and its size.
type file interface {
	io.ReaderAt
	Stat() (os.FileInfo, error)
}

// checkReader is checkFile's content check.
func checkReader(f file) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if size == 0 {
		return errors.New("the file is empty")
	}
	m, err := pickMeta(f, size)
	if err != nil {
		return err
	}
	ps := int64(m.pageSize)
	if size%ps != 0 {
		return fmt.Errorf("size %d is not a multiple of the page size %d (truncated?)", size, ps)
	}
	if m.pgid < 4 || m.pgid > uint64(size/ps) {
		return fmt.Errorf("the database needs %d pages of %d bytes but the file holds %d (truncated?)", m.pgid, ps, size/ps)
	}
	w := walker{f: f, m: m, seen: map[uint64]bool{0: true, 1: true}}
	if err := w.tree(m.root, 0); err != nil {
		return err
	}
	if m.freelist != noFreelist {
		if err := w.freelist(); err != nil {
			return err
		}
	}
	return nil
}

// pickMeta returns the meta page bbolt will use, found the way bbolt finds
// it (db.getPageSize, db.mmap, db.meta): the page size from meta page 0 when
// it is valid, else from the first valid meta page at 1 KiB << i; then the
// meta pages at 0 and at the page size, the valid one with the higher
// transaction ID. Valid means magic, version and checksum, as for bbolt (it
// does not look at the page header), and a page size this check supports.
func pickMeta(f io.ReaderAt, size int64) (meta, error) {
	m0, err0 := readMeta(f, 0)
	ps := int64(m0.pageSize)
	if err0 != nil {
		ps = 0
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			if m, err := readMeta(f, pos); err == nil {
				ps = int64(m.pageSize)
				break
			}
		}
		if ps == 0 {
			return meta{}, fmt.Errorf("no valid meta page (page 0: %w)", err0)
		}
	}
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return meta{}, fmt.Errorf("page size %d", ps)
	}
	m1, err1 := readMeta(f, ps)
	if err1 == nil && m1.txid > m0.txid || err0 != nil {
		m0, err0, m1, err1 = m1, err1, m0, err0
	}
	switch {
	case err0 == nil:
		return m0, checkPageSize(m0, ps)
	case err1 == nil:
		return m1, checkPageSize(m1, ps)
	}
	return meta{}, fmt.Errorf("no valid meta page: %w", errors.Join(err0, err1))
}

// checkPageSize makes sure the meta page in use agrees with the page size
// the file is read with.
func checkPageSize(m meta, ps int64) error {
	if int64(m.pageSize) != ps {
		return fmt.Errorf("meta page says page size %d, the file is read with %d", m.pageSize, ps)
	}
	return nil
}

// readMeta decodes and validates the meta page at off.
func readMeta(f io.ReaderAt, off int64) (meta, error) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return meta{}, fmt.Errorf("reading meta page: %w", err)
	}
	mb := b[pageHeaderSize:]
	if ne.Uint32(mb[0:]) != boltMagic {
		return meta{}, berrors.ErrInvalid
	}
	if ne.Uint32(mb[4:]) != boltVersion {
		return meta{}, berrors.ErrVersionMismatch
	}
	h := fnv.New64a()
	h.Write(mb[:metaChecksumAt])
	if h.Sum64() != ne.Uint64(mb[metaChecksumAt:]) {
		return meta{}, berrors.ErrChecksum
	}
	return meta{
		pageSize: ne.Uint32(mb[8:]),
		root:     ne.Uint64(mb[16:]),
		freelist: ne.Uint64(mb[32:]),
		pgid:     ne.Uint64(mb[40:]),
		txid:     ne.Uint64(mb[48:]),
	}, nil
}

// walker reads the pages reachable from a meta page.
type walker struct {
	f    io.ReaderAt
	m    meta
	seen map[uint64]bool // pages reached so far, each may be reached once
}

// page reads page id with its overflow pages after checking that they lie
// below the high water mark and were not reached before.
func (w *walker) page(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= w.m.pgid {
		return nil, fmt.Errorf("%s page %d is outside pages 2..%d", what, id, w.m.pgid-1)
	}
	ps := int64(w.m.pageSize)
	var hdr [pageHeaderSize]byte
	if _, err := w.f.ReadAt(hdr[:], int64(id)*ps); err != nil {
		return nil, fmt.Errorf("%s page %d: %w", what, id, err)
	}
	if got := ne.Uint64(hdr[0:]); got != id {
		return nil, fmt.Errorf("page %d identifies itself as page %d", id, got)
	}
	n := uint64(ne.Uint32(hdr[12:])) + 1
	if n > w.m.pgid-id {
		return nil, fmt.Errorf("%s page %d: %d overflow pages run past the end", what, id, n-1)
	}
	for i := id; i < id+n; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("page %d is used twice", i)
		}
		w.seen[i] = true
	}
	b := make([]byte, int64(n)*ps)
	if _, err := w.f.ReadAt(b, int64(id)*ps); err != nil {
		return nil, fmt.Errorf("%s page %d: %w", what, id, err)
	}
	return b, nil
}

// tree checks the B+tree of a bucket rooted at page id.
func (w *walker) tree(id uint64, depth int) error {
	if depth > maxDepth {
		return errors.New("buckets or trees nested too deep")
	}
	b, err := w.page(id, "tree")
	if err != nil {
		return err
	}
	return w.nodes(b, id, depth)
}

// nodes checks one branch or leaf page b (id 0 for an inline bucket).
func (w *walker) nodes(b []byte, id uint64, depth int) error {
	if len(b) < pageHeaderSize {
		return fmt.Errorf("page %d: too short", id)
	}
	flags, count := ne.Uint16(b[8:]), int(ne.Uint16(b[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
	}
	if pageHeaderSize+count*elementSize > len(b) {
		return fmt.Errorf("page %d: %d elements do not fit", id, count)
	}
	for i := range count {
		at := pageHeaderSize + i*elementSize
		e := b[at : at+elementSize]
		if flags == branchPageFlag {
			pos, ksize := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(b)) {
				return fmt.Errorf("page %d: element %d runs past the page", id, i)
			}
			if err := w.tree(ne.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		eflags, pos, ksize, vsize := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		start := uint64(at) + pos + ksize
		if start+vsize > uint64(len(b)) {
			return fmt.Errorf("page %d: element %d runs past the page", id, i)
		}
		if eflags&bucketLeafFlag == 0 {
			continue
		}
		v := b[start : start+vsize]
		if len(v) < bucketHeaderSize {
			return fmt.Errorf("page %d: bucket %d has a short header", id, i)
		}
		if depth >= maxDepth {
			return errors.New("buckets nested too deep")
		}
		if root := ne.Uint64(v); root != 0 {
			if err := w.tree(root, depth+1); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: its leaf page follows the header.
		inline := v[bucketHeaderSize:]
		if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != leafPageFlag {
			return fmt.Errorf("page %d: inline bucket %d is not a leaf page", id, i)
		}
		if err := w.nodes(inline, id, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// freelist checks the freelist page: every free page below the high water
// mark and not in use.
func (w *walker) freelist() error {
	b, err := w.page(w.m.freelist, "freelist")
	if err != nil {
		return err
	}
	if fl := ne.Uint16(b[8:]); fl != freelistPageFlag {
		return fmt.Errorf("freelist page %d has type %#x", w.m.freelist, fl)
	}
	idx, count := uint64(0), uint64(ne.Uint16(b[10:]))
	if count == 0xFFFF {
		if len(b) < pageHeaderSize+8 {
			return errors.New("freelist page too short")
		}
		idx, count = 1, ne.Uint64(b[pageHeaderSize:])
	}
	room := uint64(len(b)-pageHeaderSize) / 8
	if idx > room || count > room-idx {
		return fmt.Errorf("freelist of %d pages does not fit its page", count)
	}
	free := make(map[uint64]bool, count)
	for i := idx; i < idx+count; i++ {
		id := ne.Uint64(b[pageHeaderSize+8*i:])
		if free[id] {
			return fmt.Errorf("page %d is free twice", id)
		}
		free[id] = true
		if id < 2 || id >= w.m.pgid {
			return fmt.Errorf("free page %d is outside pages 2..%d", id, w.m.pgid-1)
		}
		if w.seen[id] {
			return fmt.Errorf("page %d is both free and in use", id)
		}
	}
	return nil
}

// isFormatError reports whether bolt.Open failed on the file's content.
func isFormatError(err error) bool {
	return errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrVersionMismatch) ||
		errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrInvalidMapping)
}

// verify is a cheap last look through bbolt itself: the root bucket can be
// iterated. The thorough check is checkFile's, which reads without mapping.
func verify(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func([]byte, *bolt.Bucket) error { return nil })
	})
}
