package refresh

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/test/testenv"
)

// identityAuthJSON writes an auth.json entry the way `docker login` does
// for an OAuth2 registry (Azure ACR): "auth" holds the user and an empty
// password, "identitytoken" the refresh token.
func identityAuthJSON(t *testing.T, registry, user, password, identity string) string {
	t.Helper()
	data, err := json.Marshal(map[string]any{"auths": map[string]any{registry: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password)), "identitytoken": identity,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.json")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tokenWorld is a registry behind the token server, three tags in two
// repositories pushed and pulled.
func tokenWorld(t *testing.T, user, password string) (*world, *testenv.TokenServer, []string) {
	t.Helper()
	testenv.RequireRoot(t)
	ts := testenv.StartTokenServer(t, user, password)
	w := newWorldWith(t, testenv.StartTokenRegistry(t, ts))
	creds := []string{"--creds", user + ":" + password}
	refs := []string{w.reg.Addr + "/one/app:1", w.reg.Addr + "/one/app:2", w.reg.Addr + "/two/app:1"}
	for _, r := range refs {
		w.pushTo(r, creds...)
		w.pull(r, creds...)
	}
	return w, ts, refs
}

func allStatus(refs []string, st Status) map[string]Status {
	m := map[string]Status{}
	for _, r := range refs {
		m[r] = st
	}
	return m
}

// checkRefreshGrants: every request is an OAuth2 refresh-token grant from
// stowage, with no password in any form, one per repository scope.
func checkRefreshGrants(t *testing.T, what string, reqs []testenv.TokenRequest, scopes ...string) {
	t.Helper()
	got := map[string]int{}
	for _, r := range reqs {
		if r.Method != http.MethodPost || r.GrantType != "refresh_token" || r.ClientID != tokenClientID || r.Basic || r.Password {
			t.Errorf("%s: token request %+v, want a POST refresh_token grant without a password", what, r)
		}
		for _, s := range r.Scopes {
			got[s]++
		}
	}
	if len(reqs) != len(scopes) {
		t.Errorf("%s: %d token requests (%+v), want %d", what, len(reqs), reqs, len(scopes))
	}
	for _, s := range scopes {
		if got[s] != 1 {
			t.Errorf("%s: scope %s requested %d times (%v)", what, s, got[s], got)
		}
	}
}

// TestRefreshTokenIdentity: an auth.json identitytoken is exchanged with an
// OAuth2 refresh-token grant (never the password), through the API and
// through the CLI's REGISTRY_AUTH_FILE; a token server without the OAuth2
// endpoint gets the password GET when a password is configured too.
func TestRefreshTokenIdentity(t *testing.T) {
	w, ts, refs := tokenWorld(t, "stwg-oauth", "0auth")
	rt := ts.RefreshToken(t)
	const acrUser = "00000000-0000-0000-0000-000000000000"
	auth := identityAuthJSON(t, w.reg.Addr, acrUser, "", rt)
	scopes := []string{"repository:one/app:pull", "repository:two/app:pull"}

	n := len(ts.Requests())
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	expect(t, rep, allStatus(refs, StatusCurrent))
	checkRefreshGrants(t, "identity token", ts.Requests()[n:], scopes...)
	if c := rep.Registries[w.reg.Addr]; c.Token != 2 || c.Head != 3 {
		t.Errorf("counters: %+v", c)
	}

	// A revoked (unknown) identity token: unauthorized, and no password
	// grant or GET is tried behind the user's back.
	n = len(ts.Requests())
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: identityAuthJSON(t, w.reg.Addr, acrUser, "", "refresh-revoked")}, false)
	expect(t, rep, allStatus(refs, StatusUnauthorized))
	for _, r := range ts.Requests()[n:] {
		if r.Method != http.MethodPost || r.GrantType != "refresh_token" || r.Status != http.StatusUnauthorized {
			t.Errorf("revoked identity token: request %+v", r)
		}
	}

	// The CLI: REGISTRY_AUTH_FILE names the auth file (podman's convention).
	bin := testenv.Stowage(t)
	env := append(append([]string{}, w.host.Env...), "CONTAINERS_REGISTRIES_CONF="+w.regConf, "REGISTRY_AUTH_FILE="+auth)
	n = len(ts.Requests())
	out := testenv.Run(t, env, bin, append(w.host.Flags(), "--state-dir", filepath.Join(t.TempDir(), "state"), "run", "refresh", "--format", "json")...)
	var cli Report
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	expect(t, &cli, allStatus(refs, StatusCurrent))
	checkRefreshGrants(t, "CLI with REGISTRY_AUTH_FILE", ts.Requests()[n:], scopes...)

	// No OAuth2 endpoint (404 to the POST): the GET with the password, when
	// the entry has one.
	ts.SetOAuth(false)
	n = len(ts.Requests())
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: identityAuthJSON(t, w.reg.Addr, "stwg-oauth", "0auth", rt)}, false)
	expect(t, rep, allStatus(refs, StatusCurrent))
	var posts, gets int
	for _, r := range ts.Requests()[n:] {
		switch {
		case r.Method == http.MethodPost && r.Status == http.StatusNotFound:
			posts++
		case r.Method == http.MethodGet && r.Basic && r.Account == "stwg-oauth" && r.Status == http.StatusOK:
			gets++
		default:
			t.Errorf("fallback: unexpected token request %+v", r)
		}
	}
	if posts != 2 || gets != 2 {
		t.Errorf("fallback: %d POSTs, %d GETs; want 2, 2", posts, gets)
	}
	// Without a password there is nothing to fall back to.
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	expect(t, rep, allStatus(refs, StatusError))
	if r := byRef(rep)[refs[0]]; !strings.Contains(r.Error, "HTTP 404") {
		t.Errorf("no OAuth2 endpoint, no password: error %q", r.Error)
	}
}

// TestRefreshTokenHelperIdentity: a credential helper answering the
// "<token>" user hands out an identity token, used as auth.json's.
func TestRefreshTokenHelperIdentity(t *testing.T) {
	w, ts, refs := tokenWorld(t, "stwg-oauth", "0auth")
	h := newCredHelper(t, w.reg.Addr, "<token>", ts.RefreshToken(t))
	t.Setenv("PATH", h.dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	authFile := filepath.Join(t.TempDir(), "auth.json")
	data, err := json.Marshal(map[string]any{"credHelpers": map[string]string{w.reg.Addr: "stwgtest"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	n := len(ts.Requests())
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: authFile}, false)
	expect(t, rep, allStatus(refs, StatusCurrent))
	checkRefreshGrants(t, "helper identity token", ts.Requests()[n:], "repository:one/app:pull", "repository:two/app:pull")
	if calls := h.calls(t); len(calls) < 1 || len(calls) > 2 {
		t.Errorf("helper called %d times: %v", len(calls), calls)
	}
}

// TestRefreshTokenExpiry: a token is reused for every HEAD within its
// expires_in and fetched again after it (a tenth of its life early); no
// expires_in means 60 s. The client's clock is the only fake.
func TestRefreshTokenExpiry(t *testing.T) {
	w, ts, refs := tokenWorld(t, "stwg-exp", "exp1re")
	auth := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-exp", "exp1re"}})
	ts.SetExpiresIn(2)

	// A whole run within 2 s: one token per repository for three tags.
	n := len(ts.Requests())
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	expect(t, rep, allStatus(refs, StatusCurrent))
	if got := len(ts.Requests()) - n; got != 2 || rep.Registries[w.reg.Addr].Token != 2 {
		t.Errorf("one run: %d token requests, counters %+v; want 2", got, rep.Registries[w.reg.Addr])
	}

	named, err := reference.ParseNormalizedNamed(refs[0])
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{SystemRegistriesConfPath: w.regConf, AuthFilePath: auth}
	for _, tc := range []struct {
		expiresIn int
		steps     []time.Duration // clock advance before each HEAD
		fetches   []bool          // whether that HEAD needed a new token
	}{
		{2, []time.Duration{0, time.Second, 700 * time.Millisecond, 100 * time.Millisecond, 2 * time.Second}, []bool{true, false, false, true, true}},
		{0, []time.Duration{0, 50 * time.Second, 3 * time.Second, 2 * time.Second, time.Second}, []bool{true, false, false, true, false}},
		{3600, []time.Duration{0, 3589 * time.Second, 2 * time.Second}, []bool{true, false, true}},
	} {
		ts.SetExpiresIn(tc.expiresIn)
		c := newClient(sys, quiet(), 1, 1, 0, 10*time.Second)
		clock := time.Now()
		c.now = func() time.Time { return clock }
		srcs, err := c.sources(named)
		if err != nil {
			t.Fatal(err)
		}
		for i, step := range tc.steps {
			clock = clock.Add(step)
			n := len(ts.Requests())
			mi, err := c.manifest(context.Background(), srcs[0].host, named, "1", false)
			if err != nil {
				t.Fatalf("expires_in %d, HEAD %d: %v", tc.expiresIn, i, err)
			}
			if err := validDigest(mi.digest); err != nil {
				t.Error(err)
			}
			if fetched := len(ts.Requests()) > n; fetched != tc.fetches[i] {
				t.Errorf("expires_in %d, HEAD %d (%s after the first): token fetched %t, want %t",
					tc.expiresIn, i, clock.Sub(time.Now()), fetched, tc.fetches[i])
			}
		}
	}
}

// TestRefreshChallengeMalformed: a registry whose WWW-Authenticate cannot
// be parsed is an error naming the header (no panic, no anonymous guess);
// several challenges in one header are read, and the first one we can
// answer is used.
func TestRefreshChallengeMalformed(t *testing.T) {
	w, ts, _ := tokenWorld(t, "stwg-ch", "ch4l")
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr))
	ref := proxy.Addr + "/one/app:1"
	w.host.Run(t, "tag", w.reg.Addr+"/one/app:1", ref)
	auth := testenv.AuthJSON(t, map[string][2]string{proxy.Addr: {"stwg-ch", "ch4l"}})

	bad := `Bearer realm="` + ts.Realm + `,service=stowage-test`
	proxy.SetFaults(testenv.Fault{Match: "/v2/", Header: map[string]string{"WWW-Authenticate": bad}})
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	r := byRef(rep)[ref]
	if r.Status != StatusError || !strings.Contains(r.Error, "malformed WWW-Authenticate") || !strings.Contains(r.Error, "unterminated") {
		t.Errorf("malformed challenge: %+v", r)
	}

	multi := `Negotiate YIIB+w==, Basic realm="x", Bearer realm="` + ts.Realm + `",service="stowage-test"`
	proxy.SetFaults(testenv.Fault{Match: "/v2/", Header: map[string]string{"WWW-Authenticate": multi}})
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	// Basic comes first among the schemes we answer; the registry wants a
	// bearer token, so Basic is refused.
	if r := byRef(rep)[ref]; r.Status != StatusUnauthorized {
		t.Errorf("Basic listed first: %+v", r)
	}
	multi = `Negotiate YIIB+w==, Bearer realm="` + ts.Realm + `",service="stowage-test", Basic realm="x"`
	proxy.SetFaults(testenv.Fault{Match: "/v2/", Header: map[string]string{"WWW-Authenticate": multi}})
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: auth}, false)
	if r := byRef(rep)[ref]; r.Status != StatusCurrent {
		t.Errorf("Bearer listed first after an unsupported scheme: %+v", r)
	}
}
