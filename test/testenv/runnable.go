package testenv

import (
	"archive/tar"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Busybox is the static busybox (Debian busybox-static) that runnable
// images are built from: one self-contained executable, no libraries.
const Busybox = "/bin/busybox"

// RunnableCommands are the busybox applets a runnable image links in /bin.
var RunnableCommands = []string{"true", "false", "sh", "sleep", "cat", "echo", "ls"}

// ImportRunnable imports an image whose rootfs holds a static busybox at
// /bin/busybox, its applets in /bin (RunnableCommands) and files (path →
// content; distinct contents make distinct layers), so that `podman run`
// works in p's store (NewPodman sets up runc and ulimits for that). It
// returns the image ID.
func (p *Podman) ImportRunnable(t testing.TB, ref string, files map[string]string) string {
	t.Helper()
	RequireTool(t, "runc")
	bb, err := os.ReadFile(Busybox)
	if err != nil {
		t.Fatalf("%v: install busybox-static (test/deps.sh)", err)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, tarPath, string(runnableTar(t, bb, files)))
	out := p.Run(t, "import", "-q", tarPath, ref)
	return strings.TrimPrefix(lastLine(out), "sha256:")
}

// runnableTar builds the rootfs archive. Every directory has its own entry:
// a path under an implicit directory makes storage's Check report it.
func runnableTar(t testing.TB, busybox []byte, files map[string]string) []byte {
	t.Helper()
	mtime := time.Unix(1700000000, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(hdr *tar.Header, data []byte) {
		hdr.ModTime = mtime
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	dirs := map[string]bool{"bin": true}
	clean := make(map[string]string, len(files))
	names := make([]string, 0, len(files))
	for name, content := range files {
		name = strings.TrimPrefix(path.Clean("/"+name), "/")
		clean[name] = content
		names = append(names, name)
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	slices.Sort(dirList) // parents sort before their children
	for _, d := range dirList {
		write(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, nil)
	}
	write(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox))}, busybox)
	for _, c := range RunnableCommands {
		write(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + c, Linkname: "busybox", Mode: 0o777}, nil)
	}
	slices.Sort(names)
	for _, name := range names {
		content := clean[name]
		write(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, []byte(content))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
