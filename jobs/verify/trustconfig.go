package verify

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"go.podman.io/image/v5/signature"
)

// ErrTrustConfig marks a broken trust configuration: a key file, keyring,
// certificate or Rekor key that a policy.json requirement names cannot be
// loaded. It is never a verdict on an image.
var ErrTrustConfig = errors.New("trust configuration error")

// TrustConfigError is one key source of a requirement that cannot be used.
type TrustConfigError struct {
	Requirement string // requirement type (signedBy, sigstoreSigned)
	Field       string // policy.json field (keyPath, fulcio.caPath, ...)
	Path        string // the file, "" for inline data
	Err         error
}

func (e *TrustConfigError) Error() string {
	where := e.Field
	if e.Path != "" {
		where = fmt.Sprintf("%s %s", e.Field, e.Path)
	}
	return fmt.Sprintf("%s: %s requirement, %s: %v", ErrTrustConfig, e.Requirement, where, e.Err)
}

// Unwrap returns the cause; errors.Is(err, ErrTrustConfig) holds too.
func (e *TrustConfigError) Unwrap() []error { return []error{ErrTrustConfig, e.Err} }

// requirementKeys is the key material of a requirement, as its JSON form
// (the requirement types are private to containers/image) carries it.
type requirementKeys struct {
	Type                string   `json:"type"`
	KeyType             string   `json:"keyType"`
	KeyPath             string   `json:"keyPath"`
	KeyPaths            []string `json:"keyPaths"`
	KeyData             []byte   `json:"keyData"`
	KeyDatas            [][]byte `json:"keyDatas"`
	RekorPublicKeyPath  string   `json:"rekorPublicKeyPath"`
	RekorPublicKeyPaths []string `json:"rekorPublicKeyPaths"`
	RekorPublicKeyData  []byte   `json:"rekorPublicKeyData"`
	RekorPublicKeyDatas [][]byte `json:"rekorPublicKeyDatas"`
	Fulcio              *struct {
		CAPath string `json:"caPath"`
		CAData []byte `json:"caData"`
	} `json:"fulcio"`
	PKI *struct {
		CARootsPath         string `json:"caRootsPath"`
		CARootsData         []byte `json:"caRootsData"`
		CAIntermediatesPath string `json:"caIntermediatesPath"`
		CAIntermediatesData []byte `json:"caIntermediatesData"`
	} `json:"pki"`
}

// keySource is one file (or inline datum) of key material.
type keySource struct {
	field, path string
	data        []byte
}

func sources(field, path string, paths []string, data []byte, datas [][]byte) []keySource {
	var out []keySource
	if path != "" {
		out = append(out, keySource{field: field + "Path", path: path})
	}
	for _, p := range paths {
		out = append(out, keySource{field: field + "Paths", path: p})
	}
	if data != nil {
		out = append(out, keySource{field: field + "Data", data: data})
	}
	for _, d := range datas {
		out = append(out, keySource{field: field + "Datas", data: d})
	}
	return out
}

// load reads a file source; inline data is returned as is.
func (s keySource) load() ([]byte, error) {
	if s.path == "" {
		return s.data, nil
	}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// CheckRequirement loads every key, keyring, certificate and Rekor key req
// refers to with the functions containers/image evaluates it with, and
// returns a *TrustConfigError for the first that cannot be read or yields
// no usable key. It is stricter than containers/image in one way: every
// file of a keyPaths list must hold a key (an empty one is a mistake, not
// a policy). Requirements without key material return nil.
func CheckRequirement(req signature.PolicyRequirement) error {
	b, err := json.Marshal(req)
	if err != nil {
		return &TrustConfigError{Requirement: "unknown", Field: "requirement", Err: fmt.Errorf("encoding: %w", err)}
	}
	var k requirementKeys
	if err := json.Unmarshal(b, &k); err != nil {
		return &TrustConfigError{Requirement: "unknown", Field: "requirement", Err: fmt.Errorf("decoding: %w", err)}
	}
	fail := func(s keySource, err error) error {
		return &TrustConfigError{Requirement: k.Type, Field: s.field, Path: s.path, Err: err}
	}
	switch k.Type {
	case RuleSignedBy:
		for _, s := range sources("key", k.KeyPath, k.KeyPaths, k.KeyData, nil) {
			data, err := s.load()
			if err != nil {
				return fail(s, err)
			}
			mech, ids, err := signature.NewEphemeralGPGSigningMechanism(data)
			if err != nil {
				return fail(s, fmt.Errorf("importing keys: %w", err))
			}
			mech.Close()
			if len(ids) == 0 {
				return fail(s, errors.New("no public keys imported"))
			}
		}
	case RuleSigstoreSigned:
		for _, s := range sources("key", k.KeyPath, k.KeyPaths, k.KeyData, k.KeyDatas) {
			data, err := s.load()
			if err != nil {
				return fail(s, err)
			}
			if _, err := cryptoutils.UnmarshalPEMToPublicKey(data); err != nil {
				return fail(s, fmt.Errorf("parsing public key: %w", err))
			}
		}
		for _, s := range sources("rekorPublicKey", k.RekorPublicKeyPath, k.RekorPublicKeyPaths, k.RekorPublicKeyData, k.RekorPublicKeyDatas) {
			data, err := s.load()
			if err != nil {
				return fail(s, err)
			}
			pk, err := cryptoutils.UnmarshalPEMToPublicKey(data)
			if err != nil {
				return fail(s, fmt.Errorf("parsing Rekor public key: %w", err))
			}
			if _, ok := pk.(*ecdsa.PublicKey); !ok {
				return fail(s, errors.New("Rekor public key is not an ECDSA key"))
			}
		}
		if f := k.Fulcio; f != nil {
			for _, s := range sources("fulcio.ca", f.CAPath, nil, f.CAData, nil) {
				if err := checkCerts(s); err != nil {
					return fail(s, err)
				}
			}
		}
		if p := k.PKI; p != nil {
			for _, s := range sources("pki.caRoots", p.CARootsPath, nil, p.CARootsData, nil) {
				if err := checkCerts(s); err != nil {
					return fail(s, err)
				}
			}
			for _, s := range sources("pki.caIntermediates", p.CAIntermediatesPath, nil, p.CAIntermediatesData, nil) {
				data, err := s.load()
				if err != nil {
					return fail(s, err)
				}
				if _, err := cryptoutils.UnmarshalCertificatesFromPEM(data); err != nil {
					return fail(s, fmt.Errorf("parsing certificates: %w", err))
				}
			}
		}
	}
	return nil
}

// checkCerts loads a CA bundle as containers/image does.
func checkCerts(s keySource) error {
	data, err := s.load()
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return errors.New("no certificates in PEM data")
	}
	return nil
}

// trustChecker caches CheckRequirement per requirement for one pass.
type trustChecker map[signature.PolicyRequirement]error

// check returns the trust configuration errors of reqs, joined ("" = none).
func (c trustChecker) check(reqs signature.PolicyRequirements) error {
	var errs []error
	for _, r := range reqs {
		err, ok := c[r]
		if !ok {
			err = CheckRequirement(r)
			c[r] = err
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errorLines lists the distinct errors found, for the report.
func (c trustChecker) errorLines() []string {
	seen := map[string]bool{}
	var out []string
	for _, err := range c {
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err.Error())
		}
	}
	return out
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
