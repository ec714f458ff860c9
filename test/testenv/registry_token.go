package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenServer is a minimal Docker registry token issuer (the bearer-token
// flow Docker Hub, quay.io and GHCR use) for docker-registry's `auth.token`:
// it checks Basic credentials and signs ES256 JWTs with a self-signed key
// the registry trusts through its rootcertbundle. It also speaks the
// distribution OAuth2 flow (docs/spec/auth/oauth.md), as Azure ACR does:
// a POST with grant_type=password (and access_type=offline, to get a
// refresh token) or grant_type=refresh_token. It records every request.
type TokenServer struct {
	Realm    string // token endpoint URL
	Service  string
	Issuer   string
	CertFile string // PEM certificate for the registry's rootcertbundle

	user, password string
	key            *ecdsa.PrivateKey
	der            []byte

	mu        sync.Mutex
	scopes    []string
	requests  []TokenRequest
	refresh   map[string]string // refresh token → user
	expiresIn int
	noOAuth   bool
}

// TokenRequest is one request the token server answered.
type TokenRequest struct {
	Method    string
	GrantType string // POST only
	ClientID  string // POST only
	Account   string // GET's account parameter
	// Basic is an Authorization: Basic header; Password a password in a
	// POSTed form. Either means the password was sent.
	Basic, Password bool
	Scopes          []string
	Status          int
}

// StartTokenServer starts an issuer on 127.0.0.1 that grants pull and push
// to user/password (anonymous and wrong credentials get 401).
func StartTokenServer(t testing.TB, user, password string) *TokenServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "stowage token issuer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &TokenServer{
		Realm: "http://" + l.Addr().String() + "/token", Service: "stowage-test", Issuer: "stowage-test-issuer",
		CertFile: filepath.Join(t.TempDir(), "token.crt"), user: user, password: password, key: key, der: der,
		refresh: map[string]string{}, expiresIn: 3600,
	}
	writePEM(t, ts.CertFile, "CERTIFICATE", der)
	srv := &http.Server{Handler: http.HandlerFunc(ts.serve)}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ts
}

// RegistryConfig is the `auth:` section for docker-registry's config.yml.
func (ts *TokenServer) RegistryConfig() string {
	return fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
		ts.Realm, ts.Service, ts.Issuer, ts.CertFile)
}

// Scopes returns the scopes of the tokens issued so far, in order.
func (ts *TokenServer) Scopes() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.scopes...)
}

// SetExpiresIn sets the expires_in of the tokens issued from now on
// (seconds; 0 leaves it out of the answer). The tokens themselves stay
// valid for an hour, so a client that renews late is not refused: only
// the request counts show when it renewed.
func (ts *TokenServer) SetExpiresIn(seconds int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.expiresIn = seconds
}

// SetOAuth turns the OAuth2 POST endpoint on (the default) or off (404, as
// token servers that only implement the GET flow answer).
func (ts *TokenServer) SetOAuth(on bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.noOAuth = !on
}

// Requests returns the requests answered so far, in order.
func (ts *TokenServer) Requests() []TokenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]TokenRequest(nil), ts.requests...)
}

// RefreshToken logs in as `docker login` does against an OAuth2 registry
// (POST grant_type=password, access_type=offline) and returns the refresh
// token, which auth.json stores as "identitytoken".
func (ts *TokenServer) RefreshToken(t testing.TB) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {ts.user}, "password": {ts.password},
		"access_type": {"offline"}, "client_id": {"stowage-test"}, "service": {ts.Service}}
	res, err := http.PostForm(ts.Realm, form)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK || out.RefreshToken == "" {
		t.Fatalf("login for a refresh token: HTTP %d, %+v, %v", res.StatusCode, out, err)
	}
	return out.RefreshToken
}

func (ts *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	req := TokenRequest{Method: r.Method, Account: r.URL.Query().Get("account")}
	status := http.StatusOK
	defer func() {
		req.Status = status
		ts.mu.Lock()
		ts.requests = append(ts.requests, req)
		ts.mu.Unlock()
	}()
	fail := func(code int, msg string) {
		status = code
		http.Error(w, msg, code)
	}
	_, _, req.Basic = r.BasicAuth()
	var (
		subject  string
		scopes   []string
		newToken string
	)
	switch r.Method {
	case http.MethodGet:
		u, p, ok := r.BasicAuth()
		if !ok || u != ts.user || p != ts.password {
			fail(http.StatusUnauthorized, "bad credentials")
			return
		}
		subject, scopes = u, r.URL.Query()["scope"]
	case http.MethodPost:
		ts.mu.Lock()
		off := ts.noOAuth
		ts.mu.Unlock()
		if off {
			fail(http.StatusNotFound, "404 page not found")
			return
		}
		if err := r.ParseForm(); err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		req.GrantType, req.ClientID = r.PostForm.Get("grant_type"), r.PostForm.Get("client_id")
		req.Password = r.PostForm.Has("password")
		for _, s := range r.PostForm["scope"] {
			scopes = append(scopes, strings.Fields(s)...)
		}
		if req.ClientID == "" {
			fail(http.StatusBadRequest, `{"error":"invalid_request","error_description":"client_id missing"}`)
			return
		}
		switch req.GrantType {
		case "password":
			if r.PostForm.Get("username") != ts.user || r.PostForm.Get("password") != ts.password {
				fail(http.StatusUnauthorized, `{"error":"invalid_grant"}`)
				return
			}
			subject = ts.user
			if r.PostForm.Get("access_type") == "offline" {
				b := make([]byte, 18)
				_, _ = rand.Read(b)
				newToken = "refresh-" + base64.RawURLEncoding.EncodeToString(b)
				ts.mu.Lock()
				ts.refresh[newToken] = subject
				ts.mu.Unlock()
			}
		case "refresh_token":
			ts.mu.Lock()
			subject = ts.refresh[r.PostForm.Get("refresh_token")]
			ts.mu.Unlock()
			if subject == "" {
				fail(http.StatusUnauthorized, `{"error":"invalid_grant"}`)
				return
			}
		default:
			fail(http.StatusBadRequest, `{"error":"unsupported_grant_type"}`)
			return
		}
	default:
		fail(http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	req.Scopes = scopes
	var access []map[string]any
	for _, scope := range scopes {
		parts := strings.Split(scope, ":")
		if len(parts) != 3 {
			continue
		}
		access = append(access, map[string]any{"type": parts[0], "name": parts[1], "actions": strings.Split(parts[2], ",")})
		ts.mu.Lock()
		ts.scopes = append(ts.scopes, scope)
		ts.mu.Unlock()
	}
	now := time.Now()
	tok, err := ts.sign(map[string]any{
		"iss": ts.Issuer, "sub": subject, "aud": ts.Service, "exp": now.Add(time.Hour).Unix(),
		"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano()), "access": access,
	})
	if err != nil {
		fail(http.StatusInternalServerError, err.Error())
		return
	}
	answer := map[string]any{"access_token": tok, "issued_at": now.UTC().Format(time.RFC3339)}
	if r.Method == http.MethodGet {
		answer["token"] = tok
	}
	ts.mu.Lock()
	if ts.expiresIn != 0 {
		answer["expires_in"] = ts.expiresIn
	}
	ts.mu.Unlock()
	if newToken != "" {
		answer["refresh_token"] = newToken
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func (ts *TokenServer) sign(claims map[string]any) (string, error) {
	enc := func(v any) (string, error) {
		b, err := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b), err
	}
	h, err := enc(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.der)}})
	if err != nil {
		return "", err
	}
	c, err := enc(claims)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(h + "." + c))
	r, s, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return h + "." + c + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// StartTokenRegistry starts a plain-HTTP docker-registry on 127.0.0.1 that
// requires bearer tokens from ts; it is stopped when the test ends.
func StartTokenRegistry(t testing.TB, ts *TokenServer) *Registry {
	t.Helper()
	return StartRegistry(t, RegistryOptions{Extra: ts.RegistryConfig()})
}
