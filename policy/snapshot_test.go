package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSnapshotRoundTrip(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(main, []byte("version = 1\n[schedule]\nprune = \"*/2 * * * *\"\njitter = \"0\"\n[prune]\nquota = \"3GiB\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(main+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(main+".d", "10-keep.toml"), []byte("[prune]\nkeep = [\"docker.io/*\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSnapshot(LoadOptions{Path: main})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{EmbeddedSource, main, filepath.Join(main+".d", "10-keep.toml")}
	if !reflect.DeepEqual(s.Files(), want) {
		t.Fatalf("files %v, want %v", s.Files(), want)
	}
	data, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	// Later edits and removals of the files change nothing in a snapshot.
	if err := os.WriteFile(main, []byte("broken ="), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Files(), want) {
		t.Fatalf("decoded files %v", got.Files())
	}
	if got.Policy.Schedule.Prune.Spec != "*/2 * * * *" || got.Policy.Prune.Keep[0] != "docker.io/*" || got.Policy.Prune.Quota != s.Policy.Prune.Quota {
		t.Fatalf("decoded policy differs: %+v", got.Policy.Prune)
	}
	for _, bad := range []string{"", "{", `{"format":9}`, `{"format":1,"sources":[{"name":"x.toml","data":"dmVyc2lvbiA9IDI="}]}`} {
		if _, err := DecodeSnapshot([]byte(bad)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("DecodeSnapshot(%q) = %v, want ErrSnapshot", bad, err)
		}
	}
}

// TestLoadRefusesFIFO: a FIFO named *.toml among the drop-ins used to block
// the load (and with it the daemon's reload) forever.
func TestLoadRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(main, []byte("version = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(main+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(main+".d", "50-pipe.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := Load(LoadOptions{Path: main}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "FIFO") {
			t.Fatalf("Load = %v, want %s: not a regular file (a FIFO)", err, fifo)
		}
	case <-time.After(5 * time.Second):
		// Unblock the reader so the test binary can end.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatal("Load blocked on a FIFO drop-in")
	}
	// A directory as the main file is refused the same way.
	if _, _, err := Load(LoadOptions{Path: main + ".d"}); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Load(directory) = %v, want ErrNotRegular", err)
	}
}
