package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/signature/sigstore"
)

// GPGKey is a signing key in its own temporary GNUPGHOME.
type GPGKey struct {
	Home        string // GNUPGHOME
	Fingerprint string
	PublicKey   string // armored public key file, for policy.json keyPath
}

// Env is the environment for gpg and `skopeo copy --sign-by`.
func (k *GPGKey) Env() []string { return []string{"GNUPGHOME=" + k.Home} }

// NewGPGKey generates an unprotected ed25519 signing key for uid
// ("Name <mail>") with `gpg --batch --quick-gen-key`.
func NewGPGKey(t testing.TB, uid string) *GPGKey {
	t.Helper()
	RequireTool(t, "gpg")
	dir := t.TempDir()
	home := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	k := &GPGKey{Home: home, PublicKey: filepath.Join(dir, "pubkey.asc")}
	t.Cleanup(func() { _, _ = RunErr(k.Env(), "gpgconf", "--kill", "all") })
	Run(t, k.Env(), "gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
	out := Run(t, k.Env(), "gpg", "--batch", "--with-colons", "--list-keys", uid)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		t.Fatalf("no fingerprint for %s in:\n%s", uid, out)
	}
	writeFile(t, k.PublicKey, Run(t, k.Env(), "gpg", "--batch", "--armor", "--export", k.Fingerprint))
	return k
}

// SigstoreKey is a sigstore key pair made by containers/image's
// GenerateKeyPair (the format skopeo and podman sign with).
type SigstoreKey struct {
	PrivateKey     string // encrypted private key file
	PublicKey      string // PEM public key, for policy.json keyPath
	PassphraseFile string
	Passphrase     []byte
}

// NewSigstoreKey generates a sigstore key pair in a temp dir.
func NewSigstoreKey(t testing.TB) *SigstoreKey {
	t.Helper()
	dir := t.TempDir()
	k := &SigstoreKey{
		PrivateKey:     filepath.Join(dir, "sigstore.key"),
		PublicKey:      filepath.Join(dir, "sigstore.pub"),
		PassphraseFile: filepath.Join(dir, "passphrase"),
		Passphrase:     []byte("stwg-verify-passphrase"),
	}
	kp, err := sigstore.GenerateKeyPair(k.Passphrase)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, k.PrivateKey, string(kp.PrivateKey))
	writeFile(t, k.PublicKey, string(kp.PublicKey))
	writeFile(t, k.PassphraseFile, string(k.Passphrase))
	return k
}

// Requirement is one containers-policy.json(5) requirement.
type Requirement map[string]any

// InsecureAcceptAnything accepts any image.
func InsecureAcceptAnything() Requirement { return Requirement{"type": "insecureAcceptAnything"} }

// Reject rejects every image.
func Reject() Requirement { return Requirement{"type": "reject"} }

// SignedBy requires a simple-signing (GPG) signature by the key in keyPath
// (default identity: matchRepoDigestOrExact).
func SignedBy(keyPath string) Requirement {
	return Requirement{"type": "signedBy", "keyType": "GPGKeys", "keyPath": keyPath}
}

// SigstoreSigned requires a sigstore signature by the public key in keyPath
// (default identity: matchRepoDigestOrExact).
func SigstoreSigned(keyPath string) Requirement {
	return Requirement{"type": "sigstoreSigned", "keyPath": keyPath}
}

// TrustPolicy is a containers-policy.json(5) document: Default plus docker
// transport scopes ("host:port/ns" → requirements).
type TrustPolicy struct {
	Default []Requirement
	Docker  map[string][]Requirement
}

// Write writes the policy to path (replacing it).
func (p TrustPolicy) Write(t testing.TB, path string) {
	t.Helper()
	doc := map[string]any{"default": p.Default}
	if p.Default == nil {
		doc["default"] = []Requirement{Reject()}
	}
	tr := map[string]any{}
	if len(p.Docker) > 0 {
		tr["docker"] = p.Docker
	}
	// Images built or imported locally (containers-storage, docker-archive
	// sources of skopeo) must stay readable.
	tr["containers-storage"] = map[string][]Requirement{"": {InsecureAcceptAnything()}}
	doc["transports"] = tr
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(data))
}

// SigningHome is a HOME directory whose ~/.config/containers holds a
// policy.json and a registries.d: podman, skopeo and containers/image pick
// both up before the system files, so setting HOME=Dir in a command's
// environment is all it takes to switch trust configuration.
type SigningHome struct {
	Dir         string
	PolicyPath  string // $HOME/.config/containers/policy.json
	RegistriesD string // $HOME/.config/containers/registries.d
	Lookaside   string // lookaside signature directory (file://)
}

// NewSigningHome makes a HOME with an empty registries.d and lookaside dir;
// write the policy with TrustPolicy.Write(t, h.PolicyPath).
func NewSigningHome(t testing.TB) *SigningHome {
	t.Helper()
	dir := t.TempDir()
	h := &SigningHome{
		Dir:         dir,
		PolicyPath:  filepath.Join(dir, ".config", "containers", "policy.json"),
		RegistriesD: filepath.Join(dir, ".config", "containers", "registries.d"),
		Lookaside:   filepath.Join(dir, "lookaside"),
	}
	for _, d := range []string{h.RegistriesD, h.Lookaside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// Env sets HOME to the signing home.
func (h *SigningHome) Env() []string { return []string{"HOME=" + h.Dir} }

// WriteRegistriesD configures the lookaside directory for every registry
// (reading and staging) and sigstore attachments for the given scopes
// ("host:port" or "host:port/namespace").
func (h *SigningHome) WriteRegistriesD(t testing.TB, sigstoreScopes ...string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "default-docker:\n  lookaside: file://%s\n  lookaside-staging: file://%s\n", h.Lookaside, h.Lookaside)
	if len(sigstoreScopes) > 0 {
		b.WriteString("docker:\n")
		for _, s := range sigstoreScopes {
			fmt.Fprintf(&b, "  %s:\n    use-sigstore-attachments: true\n", s)
		}
	}
	writeFile(t, filepath.Join(h.RegistriesD, "stowage-test.yaml"), b.String())
}
