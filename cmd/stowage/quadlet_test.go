package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runQuadletCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd(nil)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"quadlet"}, args...))
	err := root.Execute()
	return out.String(), err
}

func writeUnit(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestQuadletCmd(t *testing.T) {
	d := t.TempDir()
	writeUnit(t, filepath.Join(d, "a.container"), "[Container]\nImage=b.build\n")
	writeUnit(t, filepath.Join(d, "b.build"), "[Build]\nImageTag=localhost/qfix/b:1\n")
	writeUnit(t, filepath.Join(d, "sub", "c.container"), "[Container]\nImage=alpine\n")
	writeUnit(t, filepath.Join(d, "c.container.d", "10.conf"), "[Container]\nImage=localhost/qfix/c:2\n")
	writeUnit(t, filepath.Join(d, "e.container"), "[Container]\nImage=localhost/qfix/b:1\n")

	out, err := runQuadletCmd(t, "--quadlet-dir", d)
	if err != nil {
		t.Fatal(err)
	}
	if want := "localhost/qfix/b:1\nlocalhost/qfix/c:2\n"; out != want {
		t.Errorf("text output:\n%s\nwant:\n%s", out, want)
	}

	out, err = runQuadletCmd(t, "--quadlet-dir", d, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var imgs []struct {
		Ref   string   `json:"ref"`
		Units []string `json:"units"`
	}
	if err := json.Unmarshal([]byte(out), &imgs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(imgs) != 2 || imgs[0].Ref != "localhost/qfix/b:1" || len(imgs[0].Units) != 3 {
		t.Errorf("json = %+v", imgs)
	}

	// An unresolvable reference: what was found is printed, exit status 1.
	writeUnit(t, filepath.Join(d, "f.container"), "[Container]\nImage=gone.image\n")
	out, err = runQuadletCmd(t, "--quadlet-dir", d)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit status 1", err)
	}
	if out != "localhost/qfix/b:1\nlocalhost/qfix/c:2\n" {
		t.Errorf("output with an error: %q", out)
	}

	empty := t.TempDir()
	if out, err := runQuadletCmd(t, "--quadlet-dir", empty, "--format", "json"); err != nil || out != "[]\n" {
		t.Errorf("empty: %q, %v", out, err)
	}
}

// TestQuadletCmdFIFO (issue 12 item 7): a FIFO named like a unit used to
// hang `stowage quadlet`; it now fails naming the file.
func TestQuadletCmdFIFO(t *testing.T) {
	d := t.TempDir()
	fifo := filepath.Join(d, "f.container")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		root := newRootCmd(nil)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&stderr)
		root.SetArgs([]string{"quadlet", "--quadlet-dir", d})
		done <- root.Execute()
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error()+stderr.String(), fifo) {
			t.Fatalf("err = %v, stderr %q: want an error naming %s", err, stderr.String(), fifo)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stowage quadlet blocked on a FIFO")
	}
}
