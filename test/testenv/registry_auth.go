package testenv

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Htpasswd writes an htpasswd file (bcrypt, as docker-registry requires)
// with one user and returns its path.
func Htpasswd(t testing.TB, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	writeFile(t, p, user+":"+string(h)+"\n")
	return p
}

// AuthJSON writes a containers auth.json with credentials for each
// registry (host[:port] → [user, password]) and returns its path.
func AuthJSON(t testing.TB, creds map[string][2]string) string {
	t.Helper()
	auths := map[string]map[string]string{}
	for reg, c := range creds {
		auths[reg] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c[0] + ":" + c[1]))}
	}
	data, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, p, string(data))
	return p
}
