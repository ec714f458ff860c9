package refresh

import (
	"slices"
	"sort"

	"go.podman.io/image/v5/docker/reference"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/policy/imageref"
)

// Status classifies one reference after the remote check.
type Status string

// Statuses a result can have.
const (
	StatusCurrent      Status = "current"
	StatusDrifted      Status = "drifted"
	StatusMissing      Status = "missing"
	StatusBlocked      Status = "blocked"
	StatusUnauthorized Status = "unauthorized"
	StatusError        Status = "error"
)

// LocalImage is what the planner needs to know about one local image.
type LocalImage struct {
	ID      string
	Names   []string
	Digest  string   // the image's main manifest digest
	Digests []string // every manifest digest the image is known by (instance and list)
	// Platform of the image's config, used to choose a manifest list instance.
	OS, Architecture, Variant string
}

// Target is one tagged registry reference to check.
type Target struct {
	Reference string // normalized name:tag
	Named     reference.NamedTagged
	Image     LocalImage
	Mode      policy.RefreshMode
}

// Skipped is a name the planner did not turn into a target, with the reason.
type Skipped struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Plan picks the names to check: every tagged registry reference of every
// image, except localhost/ names, digest-pinned names and names whose mode is
// off. It is pure: no I/O.
func Plan(images []LocalImage, p policy.Refresh) ([]Target, []Skipped) {
	var targets []Target
	var skipped []Skipped
	for _, img := range images {
		for _, name := range img.Names {
			named, err := reference.ParseNormalizedNamed(name)
			if err != nil {
				skipped = append(skipped, Skipped{name, "not a registry reference"})
				continue
			}
			if _, ok := named.(reference.Digested); ok {
				skipped = append(skipped, Skipped{name, "pinned by digest"})
				continue
			}
			tagged, ok := named.(reference.NamedTagged)
			if !ok {
				skipped = append(skipped, Skipped{name, "no tag"})
				continue
			}
			if reference.Domain(named) == "localhost" {
				skipped = append(skipped, Skipped{name, "local image (localhost/)"})
				continue
			}
			ref := tagged.String()
			mode := ModeFor(ref, p)
			if mode == policy.RefreshOff {
				skipped = append(skipped, Skipped{name, "refresh mode off"})
				continue
			}
			targets = append(targets, Target{Reference: ref, Named: tagged, Image: img, Mode: mode})
		}
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].Reference < targets[j].Reference })
	return targets, skipped
}

// RuleFor returns the first [[refresh.rule]] whose match glob matches the
// reference (imageref.MatchGlob: the full or the familiar form, with or
// without the tag), and whether one does.
func RuleFor(ref string, p policy.Refresh) (policy.RefreshRule, bool) {
	for _, r := range p.Rules {
		if imageref.MatchGlob(r.Match, ref) {
			return r, true
		}
	}
	return policy.RefreshRule{}, false
}

// ModeFor returns the mode of the first [[refresh.rule]] matching the
// reference (see RuleFor), or the policy's default mode.
func ModeFor(ref string, p policy.Refresh) policy.RefreshMode {
	if r, ok := RuleFor(ref, p); ok {
		return r.Mode
	}
	if p.Mode == "" {
		return policy.RefreshNotify
	}
	return p.Mode
}

// Remote is what the registry said about a tag.
type Remote struct {
	// Digest is the tag's manifest digest (a list digest for multi-arch tags).
	Digest string
	// Instance is the digest of the list instance for the local image's
	// platform; empty when Digest is a single-image manifest.
	Instance string
	// Note is how the digest was found when that was not a plain HEAD.
	Note string
}

// Classify compares a tag's remote state with the local image: current when
// the tag's digest or the platform instance's digest is one the image is
// known by, drifted otherwise. It returns the digest that matters for the
// image's platform.
func Classify(img LocalImage, r Remote) (Status, string) {
	relevant := r.Digest
	if r.Instance != "" {
		relevant = r.Instance
	}
	if slices.Contains(img.Digests, r.Digest) || img.Digest == r.Digest {
		return StatusCurrent, relevant
	}
	if r.Instance != "" && (slices.Contains(img.Digests, r.Instance) || img.Digest == r.Instance) {
		return StatusCurrent, relevant
	}
	return StatusDrifted, relevant
}

// NeedsList reports whether a HEAD answer is not enough: the tag is a
// manifest list the image is not known by, so the instance for the image's
// platform must be read from the list.
func NeedsList(img LocalImage, headDigest string, multiImage bool) bool {
	if !multiImage {
		return false
	}
	return !slices.Contains(img.Digests, headDigest) && img.Digest != headDigest
}

// NormalizeReference returns ref in the fully qualified form history is
// keyed by ("alpine" → "docker.io/library/alpine:latest"); unparsable input
// is returned unchanged.
func NormalizeReference(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.TagNameOnly(named).String()
}
