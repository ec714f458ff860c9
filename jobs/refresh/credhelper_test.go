package refresh

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/test/testenv"
)

// credHelper is a real docker credential helper, `docker-credential-stwgtest`,
// in its own directory for PATH. It implements the `get` verb of the
// protocol (server URL on stdin, {"ServerURL","Username","Secret"} on
// stdout), answers "credentials not found" for other servers, and logs each
// call to a file. The secret it hands out is read from a file the test can
// change; the secret BROKEN makes it fail as a locked keychain would.
type credHelper struct {
	dir, log, secret string
}

func newCredHelper(t *testing.T, server, user, secret string) *credHelper {
	t.Helper()
	dir := t.TempDir()
	h := &credHelper{dir: filepath.Join(dir, "bin"), log: filepath.Join(dir, "calls.log"), secret: filepath.Join(dir, "secret")}
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.setSecret(t, secret)
	script := fmt.Sprintf(`#!/bin/sh
set -eu
case "${1:-}" in
get)
	read -r server || true
	printf 'get %%s\n' "$server" >> %[1]q
	if [ "$(cat %[4]q)" = BROKEN ]; then
		echo "keychain is locked"
		exit 1
	fi
	if [ "$server" != %[2]q ]; then
		echo "credentials not found in native keychain"
		exit 1
	fi
	printf '{"ServerURL":"%%s","Username":"%%s","Secret":"%%s"}\n' "$server" %[3]q "$(cat %[4]q)"
	;;
*)
	echo "unsupported verb: ${1:-}" >&2
	exit 1
	;;
esac
`, h.log, server, user, h.secret)
	if err := os.WriteFile(filepath.Join(h.dir, "docker-credential-stwgtest"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *credHelper) setSecret(t *testing.T, s string) {
	t.Helper()
	if err := os.WriteFile(h.secret, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// calls returns the logged calls and truncates the log.
func (h *credHelper) calls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(h.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.Fields(strings.ReplaceAll(string(data), "get ", "get:"))
}

// TestRefreshCredentialHelper: credentials come from a credential helper
// program on PATH, named by auth.json's credHelpers and by registries.conf's
// credential-helpers, against an htpasswd registry.
func TestRefreshCredentialHelper(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{Htpasswd: testenv.Htpasswd(t, "stwg-helper", "h3lper")})
	creds := []string{"--creds", "stwg-helper:h3lper"}
	refs := []string{w.reg.Addr + "/helped/app:1", w.reg.Addr + "/helped/app:2", w.reg.Addr + "/other/app:1"}
	for _, r := range refs {
		w.pushTo(r, creds...)
		w.pull(r, creds...)
	}
	h := newCredHelper(t, w.reg.Addr, "stwg-helper", "h3lper")
	t.Setenv("PATH", h.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	want := "get:" + w.reg.Addr

	all := func(st Status) map[string]Status {
		m := map[string]Status{}
		for _, r := range refs {
			m[r] = st
		}
		return m
	}
	checkCalls := func(what string, min, max int) {
		t.Helper()
		calls := h.calls(t)
		if len(calls) < min || len(calls) > max {
			t.Errorf("%s: helper called %d times (%v), want %d..%d", what, len(calls), calls, min, max)
		}
		for _, c := range calls {
			if c != want {
				t.Errorf("%s: helper asked for %q, want %q", what, c, want)
			}
		}
	}

	// auth.json: {"credHelpers": {"127.0.0.1:PORT": "stwgtest"}}.
	authFile := filepath.Join(t.TempDir(), "auth.json")
	data, err := json.Marshal(map[string]any{"auths": map[string]any{}, "credHelpers": map[string]string{w.reg.Addr: "stwgtest"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: authFile}, false)
	expect(t, rep, all(StatusCurrent))
	// Credentials are looked up once per repository, not per tag.
	checkCalls("auth.json credHelpers", 1, 2)

	h.setSecret(t, "wrong")
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: authFile}, false)
	expect(t, rep, all(StatusUnauthorized))
	checkCalls("auth.json credHelpers, wrong secret", 1, 2)

	// A helper that fails is an error with its reason, not an anonymous try.
	h.setSecret(t, "BROKEN")
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: authFile}, false)
	expect(t, rep, all(StatusError))
	if r := byRef(rep)[refs[0]]; !strings.Contains(r.Error, "keychain is locked") {
		t.Errorf("failing helper: error %q does not carry its message", r.Error)
	}
	checkCalls("auth.json credHelpers, failing helper", 1, 2)

	// registries.conf: credential-helpers = ["stwgtest"], no auth file at all.
	h.setSecret(t, "h3lper")
	w.setRegistries(fmt.Sprintf("credential-helpers = [\"stwgtest\"]\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr))
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, all(StatusCurrent))
	checkCalls("registries.conf credential-helpers", 1, 2)

	// A helper that does not know the registry: anonymous, hence unauthorized.
	h2 := newCredHelper(t, "elsewhere.example", "x", "y")
	t.Setenv("PATH", h2.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, all(StatusUnauthorized))
	if c := h2.calls(t); len(c) == 0 {
		t.Error("the helper first on PATH was not asked")
	}

	// The CLI finds the helper on its PATH (and the registry through
	// CONTAINERS_REGISTRIES_CONF, as podman does): current, then unauthorized.
	bin := testenv.Stowage(t)
	stateDir := filepath.Join(t.TempDir(), "state")
	env := append(append([]string{}, w.host.Env...),
		"CONTAINERS_REGISTRIES_CONF="+w.regConf,
		"PATH="+h.dir+string(os.PathListSeparator)+"/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		"REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "none.json"))
	cli := func(failed bool) *Report {
		t.Helper()
		out, err := testenv.RunErr(env, bin, append(w.host.Flags(), "--state-dir", stateDir, "run", "refresh", "--format", "json")...)
		// A run in which every reference failed exits 1, report printed.
		if (err != nil) != failed {
			t.Errorf("CLI: exit %v, want failed %t", err, failed)
		}
		var r Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("decoding %s: %v", out, err)
		}
		return &r
	}
	expect(t, cli(false), all(StatusCurrent))
	checkCalls("CLI", 1, 2)
	h.setSecret(t, "wrong")
	expect(t, cli(true), all(StatusUnauthorized))
	checkCalls("CLI, wrong secret", 1, 2)
}
