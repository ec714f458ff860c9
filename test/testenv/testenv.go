// Package testenv gives tests real components: a podman-built store in a temp
// directory, the stowage binary, and a docker-registry on 127.0.0.1. Missing
// tools fail the test (they are installed by test/deps.sh); nothing is mocked.
package testenv

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Tags are the build tags stowage is built with.
const Tags = "containers_image_openpgp exclude_graphdriver_btrfs"

// RequireRoot fails the test when not running as root: CI runs as root, and a
// skipped test would hide a missing prerequisite.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (run `make test` as root)")
	}
}

// RequireTool fails the test when a program is missing from PATH.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: run test/deps.sh (make deps)", n)
		}
	}
}

var buildOnce = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("STOWAGE_BIN"); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "stowage-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "stowage")
	cmd := exec.Command("go", "build", "-tags", Tags, "-o", bin, "./cmd/stowage")
	cmd.Dir = RepoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// Stowage returns the path of a stowage binary built from this tree ($STOWAGE_BIN
// when set, as `make test` does).
func Stowage(t testing.TB) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Run runs a command and returns its stdout; it fails the test on error.
func Run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// RunErr runs a command; the error includes stderr.
func RunErr(env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Podman is a private podman store: its own graphroot, runroot and config.
type Podman struct {
	Root, RunRoot, Driver string
	// Env is the environment podman and stowage must run with
	// (CONTAINERS_CONF, CONTAINERS_REGISTRIES_CONF, ...).
	Env []string
	dir string
}

// NewPodman makes an empty store in a temp dir with the given driver (vfs or
// overlay). Containers use cgroupfs and no network: no systemd is needed.
// Each store has its own libpod tmp_dir and file locks, so one test's
// cleanup cannot reset another's podman state.
func NewPodman(t testing.TB, driver string) *Podman {
	t.Helper()
	RequireTool(t, "podman", "runc")
	// Not t.TempDir(): podman refuses a runroot path longer than 50 bytes.
	dir, err := os.MkdirTemp("", "stwg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"), Driver: driver, dir: dir}
	conf := filepath.Join(dir, "containers.conf")
	writeFile(t, conf, `[containers]
netns = "none"
# Below the sandbox's hard limits: podman's defaults exceed them and the
# runtime's setrlimit fails before the container starts.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
# crun refuses hybrid cgroup hosts (cgroup v1 plus a v2 mount); runc runs.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "`+filepath.Join(dir, "events.log")+`"
tmp_dir = "`+filepath.Join(dir, "libpod-tmp")+`"
lock_type = "file"
`)
	reg := filepath.Join(dir, "registries.conf")
	writeFile(t, reg, "unqualified-search-registries = []\n")
	stconf := filepath.Join(dir, "storage.conf")
	writeFile(t, stconf, fmt.Sprintf("[storage]\ndriver = %q\ngraphroot = %q\nrunroot = %q\n", driver, p.Root, p.RunRoot))
	p.Env = []string{
		"CONTAINERS_CONF=" + conf,
		"CONTAINERS_REGISTRIES_CONF=" + reg,
		"CONTAINERS_STORAGE_CONF=" + stconf,
	}
	t.Cleanup(func() {
		// Unmount anything podman left mounted (overlay) before TempDir removal.
		_, _ = RunErr(p.Env, "podman", append(p.Flags(), "rm", "-af", "-t", "0")...)
		_, _ = RunErr(p.Env, "podman", append(p.Flags(), "system", "reset", "-f")...)
		_ = os.RemoveAll(dir)
	})
	return p
}

// Dir is the temp directory holding this store and its config files.
func (p *Podman) Dir() string { return p.dir }

// Flags are the global flags that point podman (or stowage) at this store.
func (p *Podman) Flags() []string {
	return []string{"--root", p.Root, "--runroot", p.RunRoot, "--storage-driver", p.Driver}
}

// Run runs podman against this store and returns its stdout.
func (p *Podman) Run(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(Run(t, p.Env, "podman", append(p.Flags(), args...)...))
}

// Stowage runs the stowage binary against this store and returns stdout.
func (p *Podman) Stowage(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, p.Env, Stowage(t), append(p.Flags(), args...)...)
}

// Import creates an image from files (path → content) with `podman import`
// and returns its ID. Distinct contents make distinct layers.
func (p *Podman) Import(t testing.TB, ref string, files map[string]string) string {
	t.Helper()
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	writeFile(t, tarPath, string(TarBytes(t, files)))
	out := p.Run(t, "import", "-q", tarPath, ref)
	return strings.TrimPrefix(lastLine(out), "sha256:")
}

// Build builds ref FROM base with one COPY layer per file and returns its ID.
func (p *Podman) Build(t testing.TB, ref, base string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var cf strings.Builder
	fmt.Fprintf(&cf, "FROM %s\n", base)
	i := 0
	for name, content := range files {
		src := fmt.Sprintf("f%d", i)
		writeFile(t, filepath.Join(dir, src), content)
		fmt.Fprintf(&cf, "COPY %s /%s\n", src, strings.TrimPrefix(name, "/"))
		i++
	}
	writeFile(t, filepath.Join(dir, "Containerfile"), cf.String())
	out := p.Run(t, "build", "-q", "--pull=never", "-t", ref, dir)
	return strings.TrimPrefix(lastLine(out), "sha256:")
}

// TarBytes returns an uncompressed tar archive of files (path → content).
func TarBytes(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, content := range files {
		hdr := &tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Registry is a docker-registry (distribution 2.8) serving on 127.0.0.1.
type Registry struct {
	Addr    string // host:port
	LogPath string // the registry's log: one line per request
	Dir     string
}

// RegistryOptions configure StartRegistry.
type RegistryOptions struct {
	Htpasswd string // path of an htpasswd file (bcrypt) to require auth
	CertFile string // TLS certificate and key; empty = plain HTTP
	KeyFile  string
	// Extra is raw YAML appended to the configuration (e.g. token auth).
	Extra string
}

// StartRegistry starts docker-registry on a free loopback port; it is stopped
// when the test ends.
func StartRegistry(t testing.TB, o RegistryOptions) *Registry {
	t.Helper()
	RequireTool(t, "docker-registry")
	dir := t.TempDir()
	port := FreePort(t)
	r := &Registry{Addr: fmt.Sprintf("127.0.0.1:%d", port), LogPath: filepath.Join(dir, "registry.log"), Dir: dir}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), r.Addr)
	if o.CertFile != "" {
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %s\n    key: %s\n", o.CertFile, o.KeyFile)
	}
	if o.Htpasswd != "" {
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: stowage-test\n    path: %s\n", o.Htpasswd)
	}
	cfg.WriteString(o.Extra)
	cfgPath := filepath.Join(dir, "config.yml")
	writeFile(t, cfgPath, cfg.String())
	logf, err := os.Create(r.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logf.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(r.LogPath)
			t.Fatalf("docker-registry did not start on %s: %s", r.Addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
