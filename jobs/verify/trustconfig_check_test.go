package verify_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/signature"

	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/test/testenv"
)

// TestCheckRequirement loads real keys, keyrings, certificates and Rekor
// keys, intact and broken, through policy.json requirements.
func TestCheckRequirement(t *testing.T) {
	testenv.RequireTool(t, "gpg")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gpg := testenv.NewGPGKey(t, "stwg-check <c@check.test>")
	sk := testenv.NewSigstoreKey(t)
	rekor := testenv.NewRekorKey(t)
	ca := testenv.NewFulcioCA(t, "stwg-check")
	empty := write("empty.asc", "")
	garbage := write("garbage.pem", "not a key\n")
	missing := filepath.Join(dir, "missing.asc")
	gpgKeyring, _ := os.ReadFile(gpg.PublicKey)
	sigPub, _ := os.ReadFile(sk.PublicKey)

	tests := []struct {
		name    string
		req     testenv.Requirement
		badFile string // "" = no error
	}{
		{"insecureAcceptAnything", testenv.InsecureAcceptAnything(), ""},
		{"reject", testenv.Reject(), ""},
		{"signedBy ok", testenv.SignedBy(gpg.PublicKey), ""},
		{"signedBy keyData ok", testenv.Requirement{"type": "signedBy", "keyType": "GPGKeys", "keyData": gpgKeyring}, ""},
		{"signedBy empty", testenv.SignedBy(empty), empty},
		{"signedBy missing", testenv.SignedBy(missing), missing},
		{"signedBy garbage", testenv.SignedBy(garbage), garbage},
		{"signedBy keyPaths one empty", testenv.Requirement{"type": "signedBy", "keyType": "GPGKeys", "keyPaths": []string{gpg.PublicKey, empty}}, empty},
		{"sigstore ok", testenv.SigstoreSigned(sk.PublicKey), ""},
		{"sigstore keyDatas ok", testenv.Requirement{"type": "sigstoreSigned", "keyDatas": [][]byte{sigPub}}, ""},
		{"sigstore missing", testenv.SigstoreSigned(missing), missing},
		{"sigstore empty", testenv.SigstoreSigned(empty), empty},
		{"sigstore keyPaths garbage", testenv.Requirement{"type": "sigstoreSigned", "keyPaths": []string{sk.PublicKey, garbage}}, garbage},
		{"sigstore rekor ok", testenv.Requirement{"type": "sigstoreSigned", "keyPath": sk.PublicKey, "rekorPublicKeyPath": rekor.PublicKeyPath}, ""},
		{"sigstore rekor missing", testenv.Requirement{"type": "sigstoreSigned", "keyPath": sk.PublicKey, "rekorPublicKeyPath": missing}, missing},
		{"fulcio ok", testenv.FulcioSigned(ca.CAPath, "https://issuer.test", "a@b.test", rekor.PublicKeyPath), ""},
		{"fulcio CA missing", testenv.FulcioSigned(missing, "https://issuer.test", "a@b.test", rekor.PublicKeyPath), missing},
		{"fulcio CA garbage", testenv.FulcioSigned(garbage, "https://issuer.test", "a@b.test", rekor.PublicKeyPath), garbage},
		{"fulcio rekor empty", testenv.FulcioSigned(ca.CAPath, "https://issuer.test", "a@b.test", empty), empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := json.Marshal(map[string]any{"default": []testenv.Requirement{tt.req}})
			if err != nil {
				t.Fatal(err)
			}
			pol, err := signature.NewPolicyFromBytes(doc)
			if err != nil {
				t.Fatalf("policy: %v", err)
			}
			err = verify.CheckRequirement(pol.Default[0])
			switch {
			case tt.badFile == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.badFile != "" && err == nil:
				t.Errorf("no error, want one naming %s", tt.badFile)
			case tt.badFile != "" && (!errors.Is(err, verify.ErrTrustConfig) || !strings.Contains(err.Error(), tt.badFile)):
				t.Errorf("error %v: want ErrTrustConfig naming %s", err, tt.badFile)
			}
		})
	}
}
