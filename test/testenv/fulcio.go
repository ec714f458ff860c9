package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Fulcio's OIDC issuer certificate extensions (github.com/sigstore/fulcio
// pkg/certificate): v1 holds the raw issuer string, v2 a DER UTF8String.
// containers/image accepts either and requires both to agree when present.
var (
	oidFulcioIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidFulcioIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
)

// FulcioCA is a Fulcio-like certificate authority made in the test: a
// self-signed ECDSA root and an intermediate that issues short-lived
// code-signing leaf certificates, as the public Fulcio does.
type FulcioCA struct {
	RootPEM         []byte
	IntermediatePEM []byte
	CAPath          string // root certificate PEM file, for policy.json fulcio.caPath

	intermediate    *x509.Certificate
	intermediateKey *ecdsa.PrivateKey
}

// FulcioLeaf is a leaf certificate issued by a FulcioCA with its key.
type FulcioLeaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Chain   []byte // intermediate + root PEM, as cosign's chain annotation
	Key     *ecdsa.PrivateKey
}

// RekorKey is a Rekor transparency-log signing key made in the test.
type RekorKey struct {
	Key           *ecdsa.PrivateKey
	PublicKeyPath string // PEM public key file, for policy.json rekorPublicKeyPath
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// NewFulcioCA makes a root and intermediate CA valid from a day ago to a
// day ahead, and writes the root to CAPath.
func NewFulcioCA(t testing.TB, name string) *FulcioCA {
	t.Helper()
	now := time.Now()
	rootKey := newECKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " root"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root, rootPEM := createCert(t, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)
	interKey := newECKey(t)
	interTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " intermediate"},
		NotBefore:             now.Add(-24 * time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	inter, interPEM := createCert(t, interTmpl, root, &interKey.PublicKey, rootKey)
	ca := &FulcioCA{
		RootPEM:         rootPEM,
		IntermediatePEM: interPEM,
		CAPath:          filepath.Join(t.TempDir(), "fulcio-root.pem"),
		intermediate:    inter,
		intermediateKey: interKey,
	}
	writeFile(t, ca.CAPath, string(rootPEM))
	return ca
}

// Issue issues a Fulcio-style leaf: empty subject, the email as its only
// SAN, code-signing usage, both OIDC issuer extensions, valid for ten
// minutes from notBefore.
func (ca *FulcioCA) Issue(t testing.TB, email, oidcIssuer string, notBefore time.Time) *FulcioLeaf {
	t.Helper()
	issuerV2, err := asn1.MarshalWithParams(oidcIssuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	key := newECKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:   serial(t),
		NotBefore:      notBefore,
		NotAfter:       notBefore.Add(10 * time.Minute),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses: []string{email},
		ExtraExtensions: []pkix.Extension{
			{Id: oidFulcioIssuerV1, Value: []byte(oidcIssuer)},
			{Id: oidFulcioIssuerV2, Value: issuerV2},
		},
	}
	cert, certPEM := createCert(t, tmpl, ca.intermediate, &key.PublicKey, ca.intermediateKey)
	return &FulcioLeaf{
		Cert:    cert,
		CertPEM: certPEM,
		Chain:   append(append([]byte{}, ca.IntermediatePEM...), ca.RootPEM...),
		Key:     key,
	}
}

// NewRekorKey makes a Rekor log key and writes its PEM public key.
func NewRekorKey(t testing.TB) *RekorKey {
	t.Helper()
	k := &RekorKey{Key: newECKey(t), PublicKeyPath: filepath.Join(t.TempDir(), "rekor.pub")}
	der, err := x509.MarshalPKIXPublicKey(&k.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, k.PublicKeyPath, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
	return k
}

// FulcioSigned requires a sigstore signature by a certificate of ca issued
// to email by oidcIssuer, logged in Rekor under rekorPublicKeyPath
// (default identity: matchRepoDigestOrExact).
func FulcioSigned(caPath, oidcIssuer, email, rekorPublicKeyPath string) Requirement {
	return Requirement{
		"type":               "sigstoreSigned",
		"fulcio":             map[string]string{"caPath": caPath, "oidcIssuer": oidcIssuer, "subjectEmail": email},
		"rekorPublicKeyPath": rekorPublicKeyPath,
	}
}

// SigstoreSignature is one cosign-format signature: the simple-signing
// payload and the annotations of its attachment layer.
type SigstoreSignature struct {
	Payload     []byte
	Annotations map[string]string
}

// SignFulcio signs manifestDigest for dockerRef the way cosign does in
// keyless mode: the leaf key signs the simple-signing payload, and rekor
// issues a signed entry timestamp (SET) over a hashedrekord entry of that
// signature, integrated at integratedTime.
func SignFulcio(t testing.TB, leaf *FulcioLeaf, rekor *RekorKey, manifestDigest digest.Digest, dockerRef string, integratedTime time.Time) SigstoreSignature {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"type":     "cosign container image signature",
			"image":    map[string]string{"docker-manifest-digest": manifestDigest.String()},
			"identity": map[string]string{"docker-reference": dockerRef},
		},
		"optional": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	payloadHash := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, leaf.Key, payloadHash[:])
	if err != nil {
		t.Fatal(err)
	}

	// The hashedrekord v0.0.1 entry Rekor would store; []byte fields
	// marshal as base64 like Rekor's generated models.
	body, err := json.Marshal(map[string]any{
		"apiVersion": "0.0.1",
		"kind":       "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{"hash": map[string]string{
				"algorithm": "sha256",
				"value":     hex.EncodeToString(payloadHash[:]),
			}},
			"signature": map[string]any{
				"content":   sig,
				"publicKey": map[string]any{"content": leaf.CertPEM},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	rekorPub, err := x509.MarshalPKIXPublicKey(&rekor.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	logID := sha256.Sum256(rekorPub)
	// encoding/json sorts map keys and writes compact output; with only
	// integers and base64/hex strings that is already the RFC 8785
	// canonical form containers/image hashes.
	setPayload, err := json.Marshal(map[string]any{
		"body":           body,
		"integratedTime": integratedTime.Unix(),
		"logIndex":       1,
		"logID":          hex.EncodeToString(logID[:]),
	})
	if err != nil {
		t.Fatal(err)
	}
	setHash := sha256.Sum256(setPayload)
	set, err := ecdsa.SignASN1(rand.Reader, rekor.Key, setHash[:])
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := json.Marshal(map[string]any{
		"SignedEntryTimestamp": set,
		"Payload":              json.RawMessage(setPayload),
	})
	if err != nil {
		t.Fatal(err)
	}
	return SigstoreSignature{
		Payload: payload,
		Annotations: map[string]string{
			"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig),
			"dev.sigstore.cosign/certificate":    string(leaf.CertPEM),
			"dev.sigstore.cosign/chain":          string(leaf.Chain),
			"dev.sigstore.cosign/bundle":         string(bundle),
		},
	}
}

// WriteToDir adds the signature as signature-N of a dir: transport image
// (containers/image's blob format for sigstore signatures: a zero byte,
// "sigstore-json\n", then the JSON form), so that copying the directory to
// a registry with sigstore attachments enabled uploads it as an attachment.
func (s SigstoreSignature) WriteToDir(t testing.TB, dir string, n int) {
	t.Helper()
	chunk, err := json.Marshal(map[string]any{
		"mimeType":    "application/vnd.dev.cosign.simplesigning.v1+json",
		"payload":     s.Payload,
		"annotations": s.Annotations,
	})
	if err != nil {
		t.Fatal(err)
	}
	blob := append([]byte("\x00sigstore-json\n"), chunk...)
	if err := os.WriteFile(filepath.Join(dir, "signature-"+strconv.Itoa(n)), blob, 0o644); err != nil {
		t.Fatal(err)
	}
}
