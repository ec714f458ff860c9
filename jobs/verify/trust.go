package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/signature"
	storageTransport "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"
)

// Rule types of containers-policy.json(5), as reported in Result.Rule.
const (
	RuleInsecureAcceptAnything = "insecureAcceptAnything"
	RuleReject                 = "reject"
	RuleSignedBy               = "signedBy"
	RuleSigstoreSigned         = "sigstoreSigned"
	RuleSignedBaseLayer        = "signedBaseLayer"
)

// Evaluator checks local images against one trust policy. It is not safe for
// concurrent use (a signature.PolicyContext is not).
type Evaluator struct {
	store  storage.Store
	sys    *types.SystemContext
	policy *signature.Policy
	pc     *signature.PolicyContext
	// trust holds the key-loading check of each requirement used so far.
	trust trustChecker
	// scopes are the requirements that applied to each evaluated name.
	scopes map[string]signature.PolicyRequirements
	// PolicyPath is the policy.json actually used ("" = built from bytes).
	PolicyPath string
}

// NewEvaluator loads policyPath, or the containers default lookup
// ($HOME/.config/containers/policy.json, then /etc/containers/policy.json)
// when it is empty.
func NewEvaluator(st storage.Store, policyPath string) (*Evaluator, error) {
	sys := &types.SystemContext{SignaturePolicyPath: policyPath}
	pol, err := signature.DefaultPolicy(sys)
	if err != nil {
		return nil, fmt.Errorf("loading trust policy: %w", err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		return nil, fmt.Errorf("trust policy: %w", err)
	}
	return &Evaluator{store: st, sys: sys, policy: pol, pc: pc, trust: trustChecker{},
		scopes: map[string]signature.PolicyRequirements{}, PolicyPath: policyPath}, nil
}

// Close releases the policy context.
func (e *Evaluator) Close() error { return e.pc.Destroy() }

// EvaluateImage classifies every name of img. Names that are not registry
// references (none in practice: storage names are normalized) are errors.
func (e *Evaluator) EvaluateImage(ctx context.Context, img storage.Image) []Result {
	results := make([]Result, 0, len(img.Names))
	if len(img.Names) == 0 {
		return results
	}
	ref, err := storageTransport.Transport.NewStoreReference(e.store, nil, img.ID)
	if err != nil {
		for _, n := range img.Names {
			results = append(results, Result{ImageID: img.ID, Reference: n, Status: StatusError, Reason: fmt.Sprintf("storage reference: %v", err)})
		}
		return results
	}
	src, err := ref.NewImageSource(ctx, e.sys)
	if err != nil {
		for _, n := range img.Names {
			results = append(results, Result{ImageID: img.ID, Reference: n, Status: StatusError, Reason: fmt.Sprintf("opening image: %v", err)})
		}
		return results
	}
	defer src.Close()
	un := image.UnparsedInstance(src, nil) // caches manifest and signatures across names
	// Signatures as storage serves them (the image's metadata lists them;
	// a stale big-data item left by an unsigned re-pull does not count).
	sigs, err := un.UntrustedSignatures(ctx)
	if err != nil {
		for _, n := range img.Names {
			results = append(results, Result{ImageID: img.ID, Reference: n, Status: StatusError, Reason: fmt.Sprintf("reading signatures: %v", err)})
		}
		return results
	}
	signed := len(sigs) > 0
	for _, n := range img.Names {
		results = append(results, e.evaluateName(ctx, img.ID, n, un, signed))
	}
	return results
}

func (e *Evaluator) evaluateName(ctx context.Context, id, name string, un types.UnparsedImage, signed bool) Result {
	r := Result{ImageID: id, Reference: name}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		r.Status, r.Reason = StatusError, fmt.Sprintf("not a registry reference: %v", err)
		return r
	}
	named = reference.TagNameOnly(named)
	dref, err := docker.NewReference(named)
	if err != nil {
		r.Status, r.Reason = StatusError, fmt.Sprintf("docker reference: %v", err)
		return r
	}
	reqs := e.requirementsFor(dref)
	rules := ruleTypes(reqs)
	r.Rule = strings.Join(rules, "+")
	e.scopes[name] = reqs
	// A key that cannot be loaded makes containers/image reject every
	// signature (some as a PolicyRequirementError, "No public keys
	// imported", indistinguishable from a bad signature): that is a broken
	// configuration, never a verdict on the image.
	if err := e.trust.check(reqs); err != nil {
		r.Status, r.Reason, r.TrustConfig = StatusError, oneLine(err), true
		return r
	}
	allowed, err := e.pc.IsRunningImageAllowed(ctx, image.UnparsedInstanceWithReference(un, dref))
	r.Status, r.Reason = Classify(allowed, err, rules, signed)
	return r
}

// Classify turns a policy verdict into a status and reason:
//   - allowed → accepted, with the rule types that allowed it as the reason
//     ("signedBy", "sigstoreSigned", or "insecureAcceptAnything" when no
//     signature was checked at all);
//   - a policy rejection of an image without signatures, under a rule that
//     needs them → unsigned;
//   - any other policy rejection (bad or untrusted signature, identity
//     mismatch, a "reject" rule) → rejected, with the policy's message;
//   - anything else (unreadable image, missing key file) → error.
//
// A policy rejection is a signature.PolicyRequirementError, or, when the
// image carries exactly one signature, that signature's
// signature.InvalidSignatureError (e.g. "Key not found for key ID …").
func Classify(allowed bool, err error, rules []string, signed bool) (Status, string) {
	if allowed {
		return StatusAccepted, strings.Join(rules, "+")
	}
	if err == nil {
		return StatusError, "policy denied without a reason"
	}
	var pre signature.PolicyRequirementError
	var ise signature.InvalidSignatureError
	if !errors.As(err, &pre) && !errors.As(err, &ise) {
		return StatusError, err.Error()
	}
	if !signed && needsSignature(rules) && !contains(rules, RuleReject) {
		return StatusUnsigned, err.Error()
	}
	return StatusRejected, err.Error()
}

func needsSignature(rules []string) bool {
	return contains(rules, RuleSignedBy) || contains(rules, RuleSigstoreSigned)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Recheck loads the keys of every requirement the evaluated names used
// once more (a key file may have broken during the run) and turns the
// result of each name whose requirements are now broken into a trust
// configuration error. It returns the results and the distinct trust
// configuration errors of the whole run.
func (e *Evaluator) Recheck(results []Result) ([]Result, []string) {
	again := trustChecker{}
	for i, r := range results {
		reqs, ok := e.scopes[r.Reference]
		if !ok || r.TrustConfig {
			continue
		}
		if err := again.check(reqs); err != nil {
			results[i].Status, results[i].Reason, results[i].TrustConfig = StatusError, oneLine(err), true
		}
	}
	lines := e.trust.errorLines()
	for _, l := range again.errorLines() {
		if !contains(lines, l) {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return results, lines
}

// requirementsFor returns the requirements policy.json applies to ref,
// found the way signature.PolicyContext finds them (exact identity, then
// enclosing namespaces, then the transport default, then "default").
func (e *Evaluator) requirementsFor(ref types.ImageReference) signature.PolicyRequirements {
	reqs := e.policy.Default
	if scopes, ok := e.policy.Transports[ref.Transport().Name()]; ok {
		found := false
		for _, scope := range append([]string{ref.PolicyConfigurationIdentity()}, ref.PolicyConfigurationNamespaces()...) {
			if r, ok := scopes[scope]; ok {
				reqs, found = r, true
				break
			}
		}
		if !found {
			if r, ok := scopes[""]; ok {
				reqs = r
			}
		}
	}
	return reqs
}

// ruleTypes returns the distinct types of reqs, sorted.
func ruleTypes(reqs signature.PolicyRequirements) []string {
	seen := map[string]bool{}
	var out []string
	for _, req := range reqs {
		// Requirement types are private; their JSON form carries the type.
		var t struct {
			Type string `json:"type"`
		}
		b, err := json.Marshal(req)
		if err != nil || json.Unmarshal(b, &t) != nil || t.Type == "" {
			t.Type = "unknown"
		}
		if !seen[t.Type] {
			seen[t.Type] = true
			out = append(out, t.Type)
		}
	}
	sort.Strings(out)
	return out
}
