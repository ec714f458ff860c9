// Package imageref is the one place that gives image references and
// reference globs their meaning: how a reference is normalized, what counts
// as an image ID, and what a reference glob (prune.keep, refresh.rule.match)
// matches. Pins and Quadlet references are normalized here too, so every
// part of stowage reads "alpine", "docker.io/library/alpine:latest" and
// "sha256:…" the same way.
//
// It is pure and light: it links no storage library, so the daemon can
// validate a pin without pulling in a graph driver.
package imageref

import (
	"fmt"
	"path"
	"strings"

	"go.podman.io/image/v5/docker/reference"
)

// IsIDPrefix reports whether s (without "sha256:") looks like an image or
// layer ID, or a prefix of one long enough to be unambiguous in practice
// (12 to 64 lowercase hex digits, as podman accepts).
func IsIDPrefix(s string) bool {
	if len(s) < 12 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Normalize returns ref fully qualified, with ":latest" added when it has
// neither tag nor digest (docker.io/library/alpine:latest), the way image
// names are stored.
func Normalize(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parsing reference: %w", err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// Familiar returns the short form of a reference as people write it
// ("alpine:latest" for docker.io/library/alpine:latest); names at other
// registries are returned unchanged.
func Familiar(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parsing reference: %w", err)
	}
	return reference.FamiliarString(named), nil
}

// Unqualified reports whether ref names no registry host: its first path
// component has no "." nor ":" and is not "localhost" ("alpine",
// "library/alpine", "user/app:1"). Podman resolves such short names through
// its unqualified-search-registries.
func Unqualified(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return !ok || !strings.ContainsAny(first, ".:") && first != "localhost"
}

// Repository returns a reference without its tag or digest.
func Repository(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// MatchGlob reports whether a reference glob matches the image reference
// ref. The glob uses path.Match syntax ("*" does not cross "/") and is
// tried on four forms of the reference:
//
//   - the full normalized reference: docker.io/library/alpine:3.19
//   - its repository, without tag or digest: docker.io/library/alpine
//   - the familiar short form: alpine:3.19
//   - the familiar repository: alpine
//
// so "alpine", "alpine:3.*", "docker.io/library/*" and
// "docker.io/library/alpine:3.19" all match docker.io/library/alpine:3.19,
// and a glob without a tag matches every tag. Familiar forms differ from
// the full ones only for Docker Hub, so "*" alone matches every Docker Hub
// official image (and "*/*" every Docker Hub user image) but nothing on
// another registry, whose names always have a host part. A reference that
// does not parse is matched as written and without its tag.
func MatchGlob(glob, ref string) bool {
	cands := []string{ref, Repository(ref)}
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		full := named.String()
		f := reference.FamiliarString(named)
		cands = append(cands, full, Repository(full), f, Repository(f))
	}
	for _, c := range cands {
		if ok, _ := path.Match(glob, c); ok {
			return true
		}
	}
	return false
}
