package refresh

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/reexec"
	storagetypes "go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// world is a builder store that pushes images, a registry, and a host store
// that pulled them: the store stowage refreshes.
type world struct {
	t       *testing.T
	builder *testenv.Podman
	host    *testenv.Podman
	reg     *testenv.Registry
	db      *state.DB
	regConf string // the host's registries.conf (also podman's)
	n       int
}

func newWorld(t *testing.T, regOpts testenv.RegistryOptions) *world {
	t.Helper()
	testenv.RequireRoot(t)
	return newWorldWith(t, testenv.StartRegistry(t, regOpts))
}

// newWorldWith builds the world around an already started registry.
func newWorldWith(t *testing.T, reg *testenv.Registry) *world {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman", "skopeo", "docker-registry")
	w := &world{t: t, builder: testenv.NewPodman(t, "vfs"), host: testenv.NewPodman(t, "vfs"), reg: reg}
	db, err := state.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	w.db = db
	w.regConf = filepath.Join(w.host.Dir(), "registries.conf")
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr))
	return w
}

// setRegistries writes the host's registries.conf.
func (w *world) setRegistries(body string) {
	w.t.Helper()
	if err := os.WriteFile(w.regConf, []byte("unqualified-search-registries = []\n"+body), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// push makes a fresh single-layer image and pushes it to ref (a name on the
// registry, without the host), returning the pushed manifest digest.
func (w *world) push(repoTag string, extra ...string) string {
	w.t.Helper()
	return w.pushTo(w.reg.Addr+"/"+repoTag, extra...)
}

func (w *world) pushTo(dest string, extra ...string) string {
	w.t.Helper()
	w.n++
	local := fmt.Sprintf("localhost/src%d:latest", w.n)
	w.builder.Import(w.t, local, map[string]string{"content": fmt.Sprintf("%s %d %d", dest, w.n, time.Now().UnixNano())})
	return w.pushImage(local, dest, extra...)
}

func (w *world) pushImage(local, dest string, extra ...string) string {
	w.t.Helper()
	df := filepath.Join(w.t.TempDir(), "digest")
	args := append([]string{"push", "-q", "--tls-verify=false", "--digestfile", df}, extra...)
	if len(extra) > 0 && extra[0] == "--all" {
		args = append([]string{"manifest"}, args...)
	}
	w.builder.Run(w.t, append(args, local, "docker://"+dest)...)
	d, err := os.ReadFile(df)
	if err != nil {
		w.t.Fatal(err)
	}
	return strings.TrimSpace(string(d))
}

// pull pulls a full reference into the host store and returns the image ID.
func (w *world) pull(ref string, extra ...string) string {
	w.t.Helper()
	args := append([]string{"pull", "-q", "--tls-verify=false"}, extra...)
	return w.host.Run(w.t, append(args, ref)...)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func defaultRefresh() policy.Refresh {
	return policy.Refresh{Mode: policy.RefreshNotify, Concurrency: 8, PerRegistry: 4, Timeout: policy.Duration{Duration: 10 * time.Second}}
}

// run runs the job in-process against the host store.
func (w *world) run(p policy.Refresh, sys *types.SystemContext, dryRun bool) *Report {
	w.t.Helper()
	if sys == nil {
		sys = &types.SystemContext{}
	}
	sys.SystemRegistriesConfPath = w.regConf
	if sys.AuthFilePath == "" {
		// Never the host's own auth.json.
		sys.AuthFilePath = filepath.Join(w.t.TempDir(), "auth.json")
	}
	st, err := storeopen.Open(storagetypes.StoreOptions{GraphRoot: w.host.Root, RunRoot: w.host.RunRoot, GraphDriverName: w.host.Driver})
	if err != nil {
		w.t.Fatal(err)
	}
	defer storeopen.Close(st)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, quiet(), st, w.db, Options{Policy: p, Sys: sys, DryRun: dryRun})
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

// byRef indexes results by reference.
func byRef(rep *Report) map[string]Result {
	m := map[string]Result{}
	for _, r := range rep.Results {
		m[r.Reference] = r
	}
	return m
}

// expect checks the status (and for drift the remote digest) of references.
func expect(t *testing.T, rep *Report, want map[string]Status) {
	t.Helper()
	got := byRef(rep)
	for ref, st := range want {
		r, ok := got[ref]
		if !ok {
			t.Errorf("%s: no result (results: %+v)", ref, rep.Results)
			continue
		}
		if r.Status != st {
			t.Errorf("%s: status %s, want %s (error %q)", ref, r.Status, st, r.Error)
		}
	}
}

var manifestReq = regexp.MustCompile(`"(HEAD|GET) /v2/([^ ]+)/manifests/([^ ]+) HTTP`)

// registryLog counts the manifest requests in the registry's own access
// log, per method.
func registryLog(t *testing.T, r *testenv.Registry) map[string]int {
	t.Helper()
	data, err := os.ReadFile(r.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, m := range manifestReq.FindAllStringSubmatch(string(data), -1) {
		n[m[1]]++
	}
	return n
}

func testenvRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testenv.Run(t, nil, name, args...)
}

// TestMain lets containers/storage re-execute the test binary for layer
// writes (pull mode), as main does with reexec.Init.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

// containsDigestFor reports whether the manifest list JSON lists digest for arch.
func containsDigestFor(listJSON, digest, arch string) bool {
	var l struct {
		Manifests []struct {
			Digest   string `json:"digest"`
			Platform struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if json.Unmarshal([]byte(listJSON), &l) != nil {
		return false
	}
	for _, m := range l.Manifests {
		if m.Digest == digest && m.Platform.Architecture == arch {
			return true
		}
	}
	return false
}
