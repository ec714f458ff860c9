package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.podman.io/image/v5/types"
	storagetypes "go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

// hangGuard bounds how long a test waits for a run that must end long
// before it: a run still going then is a hang (the helper sleeps 1000 s),
// not a slow machine.
const hangGuard = 90 * time.Second

// hangingHelper installs docker-credential-stwghang, a credential helper
// that never answers: a shell script waiting on `sleep 1000`, i.e. two
// processes. Each writes its pid to the returned file.
func hangingHelper(t *testing.T) (dir, pids string) {
	t.Helper()
	base := t.TempDir()
	dir, pids = filepath.Join(base, "bin"), filepath.Join(base, "pids")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\necho $$ >> %[1]q\nsleep 1000 &\necho $! >> %[1]q\nwait\n", pids)
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-stwghang"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever happened, no sleeper outlives the test
		for _, p := range readPids(pids) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	return dir, pids
}

func readPids(path string) []int {
	data, _ := os.ReadFile(path)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// alive reports whether pid runs (a zombie has ended).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// checkHelpersGone: the helper and its child were both started and are
// both gone (killed with their process group).
func checkHelpersGone(t *testing.T, pids string) {
	t.Helper()
	ps := readPids(pids)
	if len(ps) < 2 {
		t.Fatalf("helper pids %v: the helper did not run", ps)
	}
	// SIGKILL is delivered at once, but the kernel may take a moment to
	// tear a process down.
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range ps {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p) {
			t.Errorf("helper process %d still running after the run ended", p)
		}
	}
}

// startRun runs the job on w's host store in the background under ctx.
func startRun(ctx context.Context, t *testing.T, w *world, p policy.Refresh, sys *types.SystemContext) <-chan *Report {
	done := make(chan *Report, 1)
	go func() {
		st, err := storeopen.Open(storagetypes.StoreOptions{GraphRoot: w.host.Root, RunRoot: w.host.RunRoot, GraphDriverName: w.host.Driver})
		if err != nil {
			t.Error(err)
			done <- nil
			return
		}
		defer storeopen.Close(st)
		rep, err := Run(ctx, quiet(), st, w.db, Options{Policy: p, Sys: sys})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	return done
}

// waitRun waits for a run started by startRun, at most hangGuard.
func waitRun(t *testing.T, what string, done <-chan *Report) *Report {
	t.Helper()
	select {
	case rep := <-done:
		if rep == nil {
			t.FailNow()
		}
		return rep
	case <-time.After(hangGuard):
		t.Fatalf("%s: refresh still running %s later, waiting for the hanging credential helper", what, hangGuard)
		return nil
	}
}

// TestRefreshCredentialHelperHangs (issue 12 item 9): a credential helper
// that never answers is killed, with its process group, when the
// per-request timeout ends or when the run's context does; the reference
// is an error naming the helper, and the run ends instead of waiting
// 1000 s. In-process and through `stowage run refresh`.
func TestRefreshCredentialHelperHangs(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	ref := w.reg.Addr + "/hang/app:1"
	w.pushTo(ref)
	w.pull(ref)
	dir, pids := hangingHelper(t)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	authFile := filepath.Join(t.TempDir(), "auth.json")
	data, err := json.Marshal(map[string]any{"auths": map[string]any{}, "credHelpers": map[string]string{w.reg.Addr: "stwghang"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	sys := func() *types.SystemContext {
		return &types.SystemContext{SystemRegistriesConfPath: w.regConf, AuthFilePath: authFile}
	}
	start := func(t *testing.T, ctx context.Context, timeout time.Duration) <-chan *Report {
		p := defaultRefresh()
		p.Timeout = policy.Duration{Duration: timeout}
		return startRun(ctx, t, w, p, sys())
	}

	t.Run("per-request timeout", func(t *testing.T) {
		_ = os.Remove(pids)
		rep := waitRun(t, "timeout 2s", start(t, t.Context(), 2*time.Second))
		expect(t, rep, map[string]Status{ref: StatusError})
		if e := byRef(rep)[ref].Error; !strings.Contains(e, ErrTimeout.Error()) || !strings.Contains(e, "docker-credential-stwghang") {
			t.Errorf("error %q does not say the credential helper timed out", e)
		}
		checkHelpersGone(t, pids)
	})

	t.Run("run canceled", func(t *testing.T) {
		_ = os.Remove(pids)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := start(t, ctx, 10*time.Minute)
		deadline := time.Now().Add(hangGuard)
		for len(readPids(pids)) < 2 {
			if time.Now().After(deadline) {
				t.Fatal("the helper never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		rep := waitRun(t, "canceled", done)
		expect(t, rep, map[string]Status{ref: StatusError})
		if e := byRef(rep)[ref].Error; !strings.Contains(e, context.Canceled.Error()) {
			t.Errorf("error %q does not say the run was canceled", e)
		}
		checkHelpersGone(t, pids)
	})

	t.Run("CLI", func(t *testing.T) {
		_ = os.Remove(pids)
		pol := filepath.Join(t.TempDir(), "stowage.toml")
		if err := os.WriteFile(pol, []byte("version = 1\n[refresh]\ntimeout = \"2s\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
		defer cancel()
		cmd := exec.CommandContext(ctx, testenv.Stowage(t), append(w.host.Flags(), "--policy", pol, "--state-dir", filepath.Join(t.TempDir(), "state"),
			"run", "refresh", "--format", "json")...)
		cmd.Env = append(append(os.Environ(), w.host.Env...), "CONTAINERS_REGISTRIES_CONF="+w.regConf, "REGISTRY_AUTH_FILE="+authFile)
		out, err := cmd.Output()
		if ctx.Err() != nil {
			t.Fatalf("stowage run refresh still running %s later", hangGuard)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit: %v, want 1 (no reference could be checked)", err)
		}
		var rep Report
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("decoding %q: %v", out, err)
		}
		expect(t, &rep, map[string]Status{ref: StatusError})
		if e := byRef(&rep)[ref].Error; !strings.Contains(e, "docker-credential-stwghang") {
			t.Errorf("error %q does not name the helper", e)
		}
		checkHelpersGone(t, pids)
	})
}

// TestRefreshPullReusesCheckedCredentials (issue 12 item 9, pull mode): the
// pull of a drifted tag uses the credentials the check found, so
// containers/image, which runs credential helpers without a context, never
// starts one. The helper answers its first call and hangs on any other.
func TestRefreshPullReusesCheckedCredentials(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{Htpasswd: testenv.Htpasswd(t, "stwg-once", "0nce")})
	creds := []string{"--creds", "stwg-once:0nce"}
	ref := w.reg.Addr + "/once/app:1"
	w.pushTo(ref, creds...)
	oldID := w.pull(ref, creds...)
	newDigest := w.pushTo(ref, creds...)

	base := t.TempDir()
	dir, pids, count := filepath.Join(base, "bin"), filepath.Join(base, "pids"), filepath.Join(base, "count")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`#!/bin/sh
n=$(cat %[2]q 2>/dev/null || echo 0)
echo $((n+1)) > %[2]q
if [ "$n" -ge 1 ]; then
	echo $$ >> %[1]q
	sleep 1000 &
	echo $! >> %[1]q
	wait
	exit 1
fi
read -r server
printf '{"ServerURL":"%%s","Username":"stwg-once","Secret":"0nce"}\n' "$server"
`, pids, count)
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-stwgonce"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range readPids(pids) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	authFile := filepath.Join(base, "auth.json")
	data, err := json.Marshal(map[string]any{"auths": map[string]any{}, "credHelpers": map[string]string{w.reg.Addr: "stwgonce"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}

	p := defaultRefresh()
	p.Mode = policy.RefreshPull
	rep := waitRun(t, "pull", startRun(t.Context(), t, w, p, &types.SystemContext{SystemRegistriesConfPath: w.regConf, AuthFilePath: authFile}))
	r := byRef(rep)[ref]
	if r.Status != StatusDrifted || r.RemoteDigest != newDigest || r.PulledImageID == "" || r.PulledImageID == oldID || r.Error != "" {
		t.Errorf("pull mode: %+v, want drifted to %s and pulled", r, newDigest)
	}
	if ps := readPids(pids); len(ps) > 0 {
		t.Errorf("the credential helper was started again (pids %v) after the check", ps)
	}
	if data, _ := os.ReadFile(count); strings.TrimSpace(string(data)) != "1" {
		t.Errorf("helper called %q times, want 1", strings.TrimSpace(string(data)))
	}
}
