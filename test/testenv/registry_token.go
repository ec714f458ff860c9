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
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TokenServer is a minimal Docker registry token issuer (the bearer-token
// flow Docker Hub, quay.io and GHCR use) for docker-registry's `auth.token`:
// it checks Basic credentials and signs ES256 JWTs with a self-signed key
// the registry trusts through its rootcertbundle.
type TokenServer struct {
	Realm    string // token endpoint URL
	Service  string
	Issuer   string
	CertFile string // PEM certificate for the registry's rootcertbundle

	user, password string
	key            *ecdsa.PrivateKey
	der            []byte

	mu     sync.Mutex
	scopes []string
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

func (ts *TokenServer) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != ts.user || p != ts.password {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
		return
	}
	var access []map[string]any
	for _, scope := range r.URL.Query()["scope"] {
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
		"iss": ts.Issuer, "sub": u, "aud": ts.Service, "exp": now.Add(time.Hour).Unix(),
		"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano()), "access": access,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 3600})
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
