// Package volumes is the `volumes` job: it removes unused Podman volumes the
// policy allows to go, through podman's REST API (containers/storage knows
// nothing about volumes). Planning is pure (Plan); Apply deletes without
// force so podman itself refuses a volume that became used in between.
package volumes

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/policy"
)

// Reasons a volume is kept (Item.Reason in the report's "kept" list).
const (
	// ReasonInUse: a container (in any state) references the volume.
	ReasonInUse = "in_use"
	// ReasonKeepGlob: the name matches a [volumes] keep glob.
	ReasonKeepGlob = "keep_glob"
	// ReasonKeepLabel: the volume carries one of [volumes] keep_labels.
	ReasonKeepLabel = "keep_label"
	// ReasonNamed: anonymous_only is set and the volume has a user-given
	// name that no include glob matches.
	ReasonNamed = "named"
	// ReasonTooNew: created less than min_age ago (or at an unknown time).
	ReasonTooNew = "too_new"
	// ReasonBecameUsed: podman refused the deletion (409) because a
	// container started using the volume after planning.
	ReasonBecameUsed = "became_used"
	// ReasonChanged: at removal the volume differed from the planned one
	// (recreated, relabelled) and no longer qualified.
	ReasonChanged = "changed"
	// ReasonGone: the volume no longer existed at removal.
	ReasonGone = "gone"
	// ReasonNotRun: the run stopped (error) before reaching the volume.
	ReasonNotRun = "not_run"
)

// Reasons a volume is removed (Item.Reason in "removed").
const (
	ReasonAnonymous = "dangling_anonymous"
	ReasonIncluded  = "dangling_included"
	ReasonNamedOK   = "dangling_named"
)

// Item is one volume in the plan and in the report.
type Item struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
	// Detail explains the reason for people (matching glob or label...).
	Detail    string    `json:"detail,omitempty"`
	Bytes     int64     `json:"bytes"`
	Created   time.Time `json:"created"`
	Anonymous bool      `json:"anonymous"`
}

// Snapshot is what podman said about its volumes at planning time.
type Snapshot struct {
	// Volumes are all volumes.
	Volumes []podmanapi.Volume
	// Dangling names the volumes podman lists with the dangling filter.
	Dangling map[string]bool
	// Usage is system df's per-volume entry by name (sizes, links).
	Usage map[string]podmanapi.VolumeUsage
	// listing is the dangling listing with the time it was asked for, for
	// the executor (TakeSnapshot sets it).
	listing listing
}

// Plan is the outcome of planning: what to remove and what to keep, why.
type Plan struct {
	Remove []Item
	Keep   []Item
}

// Bytes sums the items' sizes.
func Bytes(items []Item) int64 {
	var n int64
	for _, it := range items {
		n += it.Bytes
	}
	return n
}

// MakePlan decides, without I/O, which volumes the policy lets go at now.
// A volume is removed only when podman lists it as dangling, system df shows
// no container linking it, and every policy rule lets it go.
func MakePlan(s Snapshot, p policy.Volumes, now time.Time) Plan {
	var pl Plan
	for _, v := range s.Volumes {
		it := Item{Name: v.Name, Created: v.CreatedAt, Anonymous: v.Anonymous, Bytes: s.Usage[v.Name].Size}
		if reason, detail, ok := Decide(v, s.Dangling[v.Name], s.Usage[v.Name].Links, p, now); ok {
			it.Reason, it.Detail = reason, detail
			pl.Remove = append(pl.Remove, it)
		} else {
			it.Reason, it.Detail = reason, detail
			pl.Keep = append(pl.Keep, it)
		}
	}
	sort.Slice(pl.Remove, func(i, j int) bool { return pl.Remove[i].Name < pl.Remove[j].Name })
	sort.Slice(pl.Keep, func(i, j int) bool { return pl.Keep[i].Name < pl.Keep[j].Name })
	return pl
}

// Decide applies the rules to one volume. ok reports whether it may be
// removed; reason and detail say why (a removal or a keep reason).
func Decide(v podmanapi.Volume, dangling bool, links int, p policy.Volumes, now time.Time) (reason, detail string, ok bool) {
	if !dangling || links > 0 {
		return ReasonInUse, fmt.Sprintf("referenced by %d container(s)", links), false
	}
	for _, g := range p.Keep {
		if m, _ := path.Match(g, v.Name); m {
			return ReasonKeepGlob, "matches keep glob " + g, false
		}
	}
	for _, l := range p.KeepLabels {
		if hasLabel(v.Labels, l) {
			return ReasonKeepLabel, "has label " + l, false
		}
	}
	reason = ReasonAnonymous
	if !v.Anonymous {
		reason = ReasonNamedOK
		if p.AnonymousOnly {
			inc := ""
			for _, g := range p.Include {
				if m, _ := path.Match(g, v.Name); m {
					inc = g
					break
				}
			}
			if inc == "" {
				return ReasonNamed, "named volume (anonymous_only)", false
			}
			reason, detail = ReasonIncluded, "matches include glob "+inc
		}
	}
	if minAge := p.MinAge.Duration; minAge > 0 {
		if v.CreatedAt.IsZero() {
			return ReasonTooNew, "creation time unknown", false
		}
		if age := now.Sub(v.CreatedAt); age < minAge {
			return ReasonTooNew, fmt.Sprintf("created %s ago, min_age %s", age.Round(time.Second), minAge), false
		}
	}
	return reason, detail, true
}

// hasLabel reports whether labels carry want: a key ("io.stowage.keep") or a
// key=value pair.
func hasLabel(labels map[string]string, want string) bool {
	k, v, withValue := strings.Cut(want, "=")
	got, ok := labels[k]
	if !ok {
		return false
	}
	return !withValue || got == v
}
