package testenv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// JournalSink is a unix datagram socket that receives what a process built
// with BuildStowage's journal socket sends: the entries journald would
// store, decoded from the native protocol. It stands in for journald only
// on hosts without one; it does not interpret the entries.
type JournalSink struct {
	Path    string
	mu      sync.Mutex
	entries []map[string]string
	errs    []error
}

// ListenJournal listens on dir/journal.sock until the test ends.
func ListenJournal(t testing.TB, dir string) *JournalSink {
	t.Helper()
	s := &JournalSink{Path: filepath.Join(dir, "journal.sock")}
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.Path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		buf := make([]byte, 1<<20)
		for {
			n, err := l.Read(buf)
			if err != nil {
				return
			}
			e, err := ParseJournalNative(slices.Clone(buf[:n]))
			s.mu.Lock()
			if err != nil {
				s.errs = append(s.errs, err)
			} else {
				s.entries = append(s.entries, e)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// Entries returns the entries received so far and any datagram that did
// not decode.
func (s *JournalSink) Entries() ([]map[string]string, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries), slices.Clone(s.errs)
}

// ParseJournalNative decodes one datagram of the journal native protocol.
func ParseJournalNative(d []byte) (map[string]string, error) {
	f := map[string]string{}
	for len(d) > 0 {
		nl := bytes.IndexByte(d, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("unterminated field in %q", d)
		}
		line := d[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			f[string(k)] = string(v)
			d = d[nl+1:]
			continue
		}
		// binary-safe form: KEY\n, little-endian uint64 size, data, \n
		rest := d[nl+1:]
		if len(rest) < 8 {
			return nil, fmt.Errorf("short binary field %q", line)
		}
		n := binary.LittleEndian.Uint64(rest[:8])
		if uint64(len(rest)) < 8+n+1 || rest[8+n] != '\n' {
			return nil, fmt.Errorf("bad binary field %q", line)
		}
		f[string(line)] = string(rest[8 : 8+n])
		d = rest[8+n+1:]
	}
	return f, nil
}

// BuildStowage builds the stowage binary with go-systemd's journal socket
// redirected to socket, so its journal entries reach a JournalSink.
func BuildStowage(t testing.TB, socket string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stowage")
	cmd := exec.Command("go", "build", "-tags", Tags, "-o", bin,
		"-ldflags", "-X github.com/coreos/go-systemd/v22/journal.journalSocket="+socket, "./cmd/stowage")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
