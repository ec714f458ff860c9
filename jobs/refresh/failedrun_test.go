package refresh

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestRefreshAllFailedIsFailedRun (issue 12 item 13): a run in which every
// reference failed (a broken registries.conf or auth.json: "2 references
// checked, 2 error") checked nothing: `stowage run refresh` still prints
// its report but exits non-zero, and the daemon records the run as failed.
// One reference that did check keeps the run successful.
func TestRefreshAllFailedIsFailedRun(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	regConf := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr)
	w.setRegistries(regConf)
	refs := []string{proxy.Addr + "/failing/app:1", proxy.Addr + "/failing/app:2"}
	for _, r := range refs {
		w.pushTo(r)
		w.pull(r)
	}
	bin := testenv.Stowage(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	goodAuth := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(goodAuth, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	badAuth := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(badAuth, []byte(`{"auths": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(auth string) []string {
		return append(append([]string{}, w.host.Env...), "CONTAINERS_REGISTRIES_CONF="+w.regConf, "REGISTRY_AUTH_FILE="+auth)
	}
	cli := func(auth string) (*Report, error) {
		t.Helper()
		out, err := testenv.RunErr(env(auth), bin, append(w.host.Flags(), "--state-dir", stateDir, "run", "refresh", "--format", "json")...)
		var r Report
		if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
			t.Fatalf("decoding %q: %v (exit: %v)", out, jerr, err)
		}
		return &r, err
	}
	all := func(st Status) map[string]Status {
		m := map[string]Status{}
		for _, r := range refs {
			m[r] = st
		}
		return m
	}
	exitCode := func(err error) int {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		return 0
	}

	// Healthy: exit 0.
	rep, err := cli(goodAuth)
	if err != nil {
		t.Fatalf("healthy run: %v", err)
	}
	expect(t, rep, all(StatusCurrent))

	// A broken auth.json: every reference is an error, the run fails.
	rep, err = cli(badAuth)
	expect(t, rep, all(StatusError))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "no reference could be checked") {
		t.Errorf("broken auth.json: exit %d (%v), want 1 saying no reference could be checked", exitCode(err), err)
	}

	// A broken registries.conf: likewise.
	if err := os.WriteFile(w.regConf, []byte("[[registry]\nlocation = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err = cli(goodAuth)
	expect(t, rep, all(StatusError))
	if exitCode(err) != 1 || !strings.Contains(err.Error(), "registries.conf") {
		t.Errorf("broken registries.conf: exit %d (%v), want 1 naming registries.conf", exitCode(err), err)
	}

	// One reference checked, one failed (HTTP 500): a successful run.
	w.setRegistries(regConf)
	proxy.SetFaults(testenv.Fault{Match: "/v2/failing/app/manifests/2", Status: 500})
	rep, err = cli(goodAuth)
	expect(t, rep, map[string]Status{refs[0]: StatusCurrent, refs[1]: StatusError})
	if err != nil {
		t.Errorf("one of two references failed: %v, want exit 0", err)
	}
	proxy.SetFaults()

	// The daemon: the worker's non-zero exit is a failed run, with its report.
	pol := filepath.Join(t.TempDir(), "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\nrefresh = \"@yearly\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	testenv.StartDaemon(t, bin, sock, env(badAuth),
		append(w.host.Flags(), "--user", "--state-dir", stateDir, "--policy", pol, "daemon", "--socket", sock)...)
	out, err := testenv.RunErr(nil, bin, "--user", "trigger", "refresh", "--wait", "--format", "json", "--socket", sock)
	if exitCode(err) != 1 {
		t.Errorf("trigger --wait: exit %d (%v), want 1", exitCode(err), err)
	}
	// The run as the control API returns it (service/api.Run); jobs/ does
	// not import service/.
	var run struct {
		Outcome  string          `json:"outcome"`
		ExitCode int             `json:"exit_code"`
		Error    string          `json:"error"`
		Report   json.RawMessage `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &run); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	if run.Outcome != "failed" || run.ExitCode != 1 || !strings.Contains(run.Error, "no reference could be checked") {
		t.Errorf("daemon run: outcome %s exit %d error %q, want failed, 1, no reference could be checked", run.Outcome, run.ExitCode, run.Error)
	}
	var drep Report
	if err := json.Unmarshal(run.Report, &drep); err != nil {
		t.Fatalf("daemon run report %s: %v", run.Report, err)
	}
	expect(t, &drep, all(StatusError))
}
