package refresh

import (
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/stowage/stowage/policy"
)

// Version is a tag that looks like a version: an optional "v", one to
// three numeric parts and an optional suffix ("1.25", "v2.1.3",
// "1.25.3-alpine", "1.26.0-rc1-alpine").
type Version struct {
	Tag   string
	V     bool  // the tag starts with "v"
	Parts []int // 1 to 3 numbers
	// Pre is the pre-release label of the suffix ("rc", "beta", ...), empty
	// for a release; PreNum its number ("rc1" → 1, "rc" → 0).
	Pre    string
	PreNum int
	// Rest is the suffix without its pre-release part ("-alpine").
	Rest string
}

var (
	versionRe = regexp.MustCompile(`^(v?)(\d{1,9})(?:\.(\d{1,9}))?(?:\.(\d{1,9}))?((?:[-_+][A-Za-z0-9._+-]*)?)$`)
	// A pre-release suffix starts with one of these labels as a whole word,
	// optionally numbered (-rc1, -rc.2, -beta, -alpha3), then maybe a
	// variant (-rc1-alpine); "-developer" or "-rcs" are no pre-releases.
	preRe = regexp.MustCompile(`^[-_+](alpha|beta|rc|pre|preview|dev)(?:[.-]?(\d{1,9}))?([-_.+].*)?$`)
)

// preRank orders pre-release labels; every one is below a release.
var preRank = map[string]int{"dev": 0, "alpha": 1, "beta": 2, "pre": 3, "preview": 3, "rc": 4}

// ParseVersion parses a version-like tag; ok is false for other tags
// ("latest", "stable", "2024-01-01", a commit hash).
func ParseVersion(tag string) (Version, bool) {
	m := versionRe.FindStringSubmatch(tag)
	if m == nil {
		return Version{}, false
	}
	v := Version{Tag: tag, V: m[1] == "v"}
	for _, s := range m[2:5] {
		if s == "" {
			break
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return Version{}, false
		}
		v.Parts = append(v.Parts, n)
	}
	suffix := m[5]
	// A date-like or hash-like single number is no version: "20240101".
	if len(v.Parts) == 1 && len(m[2]) >= 6 {
		return Version{}, false
	}
	if p := preRe.FindStringSubmatch(strings.ToLower(suffix)); p != nil {
		v.Pre = p[1]
		if p[2] != "" {
			v.PreNum, _ = strconv.Atoi(p[2])
		}
		v.Rest = suffix[len(suffix)-len(p[3]):]
	} else {
		v.Rest = suffix
	}
	return v, true
}

// Track identifies the versions a tag is compared with: the same "v"
// prefix, the same number of numeric parts and the same suffix once the
// pre-release part is set aside. "1.25" and "1.26" share a track;
// "1.25" and "1.25.4", or "1.25" and "1.26-alpine", do not.
func (v Version) Track() string {
	p := ""
	if v.V {
		p = "v"
	}
	return p + strconv.Itoa(len(v.Parts)) + "|" + v.Rest
}

// Compare orders two versions of one track: numbers first, then a release
// above its pre-releases, then pre-release label and number.
func (v Version) Compare(o Version) int {
	for i := 0; i < len(v.Parts) && i < len(o.Parts); i++ {
		if v.Parts[i] != o.Parts[i] {
			return cmpInt(v.Parts[i], o.Parts[i])
		}
	}
	if len(v.Parts) != len(o.Parts) {
		return cmpInt(len(v.Parts), len(o.Parts))
	}
	switch {
	case v.Pre == "" && o.Pre == "":
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	}
	if c := cmpInt(preRank[v.Pre], preRank[o.Pre]); c != 0 {
		return c
	}
	return cmpInt(v.PreNum, o.PreNum)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Allows reports whether cand is a newer version of v that level permits:
// same track, greater, not a pre-release unless v is one, and for patch the
// same major and minor (a three-part version), for minor the same major.
func (v Version) Allows(cand Version, level policy.NewerLevel) bool {
	if cand.Track() != v.Track() || cand.Compare(v) <= 0 {
		return false
	}
	if cand.Pre != "" && v.Pre == "" {
		return false
	}
	switch level {
	case policy.NewerMajor:
		return true
	case policy.NewerMinor:
		return len(v.Parts) >= 2 && cand.Parts[0] == v.Parts[0]
	case policy.NewerPatch:
		return len(v.Parts) == 3 && cand.Parts[0] == v.Parts[0] && cand.Parts[1] == v.Parts[1]
	}
	return false
}

// CanHaveNewer reports whether any version could be newer than v at
// level: patch needs three numeric parts, minor at least two. A tag that
// cannot costs no listing.
func (v Version) CanHaveNewer(level policy.NewerLevel) bool {
	switch level {
	case policy.NewerMajor:
		return true
	case policy.NewerMinor:
		return len(v.Parts) >= 2
	case policy.NewerPatch:
		return len(v.Parts) == 3
	}
	return false
}

// Newest returns the newest of tags that level allows as newer than v,
// and false when there is none. Tags that are no versions are ignored.
func Newest(v Version, tags []string, level policy.NewerLevel) (string, bool) {
	var best Version
	found := false
	for _, t := range tags {
		c, ok := ParseVersion(t)
		if !ok || !v.Allows(c, level) {
			continue
		}
		if !found || c.Compare(best) > 0 || c.Compare(best) == 0 && c.Tag < best.Tag {
			best, found = c, true
		}
	}
	return best.Tag, found
}

// TagSelected applies refresh.newer_tags and refresh.newer_exclude to a tag
// (path.Match globs, validated by the policy).
func TagSelected(tag string, include, exclude []string) bool {
	for _, g := range exclude {
		if ok, _ := path.Match(g, tag); ok {
			return false
		}
	}
	if len(include) == 0 {
		return true
	}
	for _, g := range include {
		if ok, _ := path.Match(g, tag); ok {
			return true
		}
	}
	return false
}
