package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
)

// NewerResult is the newer-version check of one local reference.
type NewerResult struct {
	Reference string            `json:"reference"`
	ImageID   string            `json:"image_id"`
	Tag       string            `json:"tag"`
	Level     policy.NewerLevel `json:"level"`
	// Newer is the newest allowed version's tag, empty when none; NewerRef
	// is it as a full reference.
	Newer    string `json:"newer,omitempty"`
	NewerRef string `json:"newer_reference,omitempty"`
	// New is true the first time this newer version is reported for the
	// reference.
	New bool `json:"new"`
	// FirstSeen is when Newer was first reported for the reference.
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// PulledImageID is the image pulled for Newer (rule pull_newer).
	PulledImageID string `json:"pulled_image_id,omitempty"`
	Error         string `json:"error,omitempty"`
	// Note says why a newer version to pull was not pulled (deferred).
	Note string `json:"note,omitempty"`
}

// LocalVersion is one local tag taking part in the newer-version check.
type LocalVersion struct {
	Target  Target
	Version Version
	Level   policy.NewerLevel
}

// Listing is one repository whose tags are listed once in a run, for
// every local version-like tag of it.
type Listing struct {
	Repo   string // normalized repository name
	Named  reference.Named
	Locals []LocalVersion
}

// NewerFor returns the newer-version level for ref: that of the first
// [[refresh.rule]] matching it (as in ModeFor) when the rule sets one, else
// refresh.newer; unset means off.
func NewerFor(ref string, p policy.Refresh) policy.NewerLevel {
	if r, ok := RuleFor(ref, p); ok && r.Newer != "" {
		return r.Newer
	}
	return levelOrOff(p.Newer)
}

func levelOrOff(l policy.NewerLevel) policy.NewerLevel {
	if l == "" {
		return policy.NewerOff
	}
	return l
}

// PlanNewer groups the targets whose tag looks like a version, is selected
// by newer_tags/newer_exclude and whose level is not off, by repository:
// one listing per repository, sorted by name. Pure.
func PlanNewer(targets []Target, p policy.Refresh) []Listing {
	byRepo := map[string]*Listing{}
	for _, t := range targets {
		level := NewerFor(t.Reference, p)
		if level == policy.NewerOff {
			continue
		}
		tag := t.Named.Tag()
		if !TagSelected(tag, p.NewerTags, p.NewerExclude) {
			continue
		}
		v, ok := ParseVersion(tag)
		if !ok || !v.CanHaveNewer(level) {
			continue
		}
		repo := t.Named.Name()
		l := byRepo[repo]
		if l == nil {
			l = &Listing{Repo: repo, Named: reference.TrimNamed(t.Named)}
			byRepo[repo] = l
		}
		l.Locals = append(l.Locals, LocalVersion{Target: t, Version: v, Level: level})
	}
	out := make([]Listing, 0, len(byRepo))
	for _, l := range byRepo {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Repo < out[j].Repo })
	return out
}

// OrderListings puts the listings whose repository was listed least
// recently (by the oldest NewerChecked of its references, never first)
// first, ties by name, so that a budget too small for every repository
// lists the others in later runs. Pure.
func OrderListings(ls []Listing, listed map[string]time.Time) []Listing {
	oldest := func(l Listing) time.Time {
		var t time.Time
		for i, lv := range l.Locals {
			if c := listed[lv.Target.Reference]; i == 0 || c.Before(t) {
				t = c
			}
		}
		return t
	}
	out := slices.Clone(ls)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := oldest(out[i]), oldest(out[j])
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i].Repo < out[j].Repo
	})
	return out
}

// FitBudget keeps the listings the request budget can pay for: a listing
// costs at least one request to its registry, so a registry with r
// requests left gets its first r listings (in plan order) and the rest are
// dropped, leaving the budget's remainder unspent rather than failing
// half-way. remaining returns a registry's requests left; negative means
// no cap. Pure.
func FitBudget(ls []Listing, remaining func(registry string) int) (keep, drop []Listing) {
	spent := map[string]int{}
	for _, l := range ls {
		reg := reference.Domain(l.Named)
		r := remaining(reg)
		if r >= 0 && spent[reg] >= r {
			drop = append(drop, l)
			continue
		}
		spent[reg]++
		keep = append(keep, l)
	}
	return keep, drop
}

// Choose returns, for each local tag of a listing, the newest version in
// tags that its level allows (tags filtered by newer_tags/newer_exclude).
// Pure.
func Choose(l Listing, tags []string, p policy.Refresh) []NewerResult {
	var sel []string
	for _, t := range tags {
		if TagSelected(t, p.NewerTags, p.NewerExclude) {
			sel = append(sel, t)
		}
	}
	out := make([]NewerResult, 0, len(l.Locals))
	for _, lv := range l.Locals {
		r := NewerResult{Reference: lv.Target.Reference, ImageID: lv.Target.Image.ID, Tag: lv.Version.Tag, Level: lv.Level}
		if n, ok := Newest(lv.Version, sel, lv.Level); ok {
			r.Newer, r.NewerRef = n, l.Repo+":"+n
		}
		out = append(out, r)
	}
	return out
}

// checkNewer lists each planned repository's tags (one listing per
// repository, within the budget left after the digest checks) and picks
// each local tag's newest allowed version.
func (c *client) checkNewer(ctx context.Context, ls []Listing, p policy.Refresh, pageSize int) []NewerResult {
	if pageSize <= 0 {
		pageSize = tagsPageSize
	}
	remaining := func(reg string) int {
		if c.budget <= 0 {
			return -1
		}
		cnt := c.counters()[reg]
		return max(c.budget-cnt.total(), 0)
	}
	keep, drop := FitBudget(ls, remaining)
	results := make([][]NewerResult, len(keep))
	var wg sync.WaitGroup
	for i, l := range keep {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tags, err := c.listRepository(ctx, l.Named, pageSize)
			if err != nil {
				results[i] = failed(l, err)
				return
			}
			results[i] = Choose(l, tags, p)
		}()
	}
	wg.Wait()
	var out []NewerResult
	for _, rs := range results {
		out = append(out, rs...)
	}
	for _, l := range drop {
		out = append(out, failed(l, fmt.Errorf("%w: no request left to list %s", ErrBudget, l.Repo))...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Reference < out[j].Reference })
	return out
}

func failed(l Listing, err error) []NewerResult {
	out := make([]NewerResult, 0, len(l.Locals))
	for _, lv := range l.Locals {
		out = append(out, NewerResult{Reference: lv.Target.Reference, ImageID: lv.Target.Image.ID, Tag: lv.Version.Tag, Level: lv.Level, Error: err.Error()})
	}
	return out
}

// listRepository lists named's tags from its first pull source that
// answers (mirrors first, as for the digest checks).
func (c *client) listRepository(ctx context.Context, named reference.Named, pageSize int) ([]string, error) {
	srcs, err := c.sources(named)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, s := range srcs {
		l, err := c.listTags(ctx, s.host, s.named, pageSize)
		if err == nil {
			if l.truncated {
				c.log.Info("tag list truncated", "repository", named.Name(), "pages", l.pages, "tags", len(l.tags))
			}
			return l.tags, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil || errors.Is(err, ErrBudget) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// NewerSeen is one newer version reported for a reference.
type NewerSeen struct {
	Tag       string    `json:"tag"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// observeNewer records tag at now; it returns true when it was not
// reported before for this reference.
func (r *Record) observeNewer(tag string, now time.Time) bool {
	for i := range r.Newer {
		if r.Newer[i].Tag == tag {
			r.Newer[i].LastSeen = now
			return false
		}
	}
	r.Newer = append(r.Newer, NewerSeen{Tag: tag, FirstSeen: now, LastSeen: now})
	if len(r.Newer) > MaxSeen {
		sort.SliceStable(r.Newer, func(i, j int) bool { return r.Newer[i].LastSeen.After(r.Newer[j].LastSeen) })
		r.Newer = r.Newer[:MaxSeen]
	}
	return true
}

// newerFirstSeen is when tag was first reported for the reference (now if
// the record no longer holds it).
func (r *Record) newerFirstSeen(tag string, now time.Time) time.Time {
	for _, s := range r.Newer {
		if s.Tag == tag {
			return s.FirstSeen
		}
	}
	return now
}

// commitNewer records, in one write transaction (dry-run: read only), when
// each reference's repository was listed and the newer versions found, and
// marks each result New when its version was not reported before for its
// reference; deciding inside the transaction makes it exactly-once across
// overlapping runs.
func commitNewer(db *state.DB, results []NewerResult, now time.Time, dryRun bool) error {
	merge := func(b *bolt.Bucket, write bool) error {
		for i := range results {
			r := &results[i]
			if r.Error != "" {
				continue // not listed
			}
			rec := &Record{Reference: r.Reference}
			if b != nil {
				if err := state.GetJSON(b, r.Reference, rec); err != nil && !errors.Is(err, state.ErrNotFound) {
					return err
				}
			}
			rec.NewerChecked = now
			if r.Newer != "" {
				r.New = rec.observeNewer(r.Newer, now)
				r.FirstSeen = rec.newerFirstSeen(r.Newer, now)
			}
			if write {
				if err := state.PutJSON(b, r.Reference, rec); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := historyTx(db, dryRun, merge); err != nil {
		return fmt.Errorf("refresh history (newer versions): %w", err)
	}
	return nil
}

// newerEvents are the events of the newer versions reported for the first
// time.
func newerEvents(results []NewerResult) []report.Event {
	var evs []report.Event
	for _, r := range results {
		if r.Newer == "" || !r.New {
			continue
		}
		evs = append(evs, report.Event{
			Kind: report.EventNewerVersion, Severity: report.SeverityNormal,
			Message:   fmt.Sprintf("%s: newer version %s available (%s updates)", r.Reference, r.Newer, r.Level),
			Topic:     "refresh-newer:" + r.Reference,
			Image:     r.ImageID,
			Reference: r.Reference,
			Newer:     r.NewerRef,
		})
	}
	return evs
}

// summarizeNewer adds the newer-version figures to the report's metrics
// and summary.
func summarizeNewer(rep *Report, pulled int) {
	pending, fresh, errs := 0, 0, 0
	var oldest time.Time
	for _, r := range rep.Newer {
		switch {
		case r.Newer != "": // a failed pull of it keeps it pending
			pending++
			if !r.FirstSeen.IsZero() && (oldest.IsZero() || r.FirstSeen.Before(oldest)) {
				oldest = r.FirstSeen
			}
			if r.New {
				fresh++
			}
		case r.Error != "":
			errs++
		}
	}
	rep.Metrics["newer_checked"] = float64(len(rep.Newer))
	rep.Metrics["newer_pending"] = float64(pending)
	rep.Metrics["newer_new"] = float64(fresh)
	rep.Metrics["newer_errors"] = float64(errs)
	rep.Metrics["tags_requests"] = float64(rep.TagsRequests)
	rep.Metrics["newer_pulled"] = float64(pulled)
	if !oldest.IsZero() {
		rep.Metrics["newer_oldest_first_seen"] = float64(oldest.Unix())
	}
	if len(rep.Newer) == 0 {
		return
	}
	rep.Summary += fmt.Sprintf(", %d tag-list pages; %d of %d version tags have a newer version", rep.TagsRequests, pending, len(rep.Newer))
	if fresh > 0 {
		rep.Summary += fmt.Sprintf(" (%d new)", fresh)
	}
	if errs > 0 {
		rep.Summary += fmt.Sprintf(", %d not listed", errs)
	}
	if pulled > 0 {
		rep.Summary += fmt.Sprintf(", %d newer versions pulled", pulled)
	}
}

// PullNewerFor reports whether the newer version found for ref is to be
// pulled: the first [[refresh.rule]] matching it sets pull_newer with mode
// pull.
func PullNewerFor(ref string, p policy.Refresh) bool {
	r, ok := RuleFor(ref, p)
	return ok && r.PullNewer && r.Mode == policy.RefreshPull
}

// pullNewer pulls the newer versions a rule asks for, as NAME:NEWTAG; the
// old tag and image are left alone. A newer reference already held locally
// is not pulled again. The newer version of force (Options.PullOnly) is
// pulled whatever the rules say. It returns how many were pulled.
func pullNewer(ctx context.Context, log *slog.Logger, store storage.Store, sys *types.SystemContext, c *client, plat *platforms,
	targets []Target, images []LocalImage, p policy.Refresh, force string, dryRun bool, deferWhy string, rep *Report) (pulled, deferred int) {
	if dryRun {
		return 0, 0
	}
	byRef := make(map[string]Target, len(targets))
	for _, t := range targets {
		byRef[t.Reference] = t
	}
	local := map[string]bool{}
	for _, img := range images {
		for _, n := range img.Names {
			local[NormalizeReference(n)] = true
		}
	}
	var pl *puller
	n := 0
	for i := range rep.Newer {
		r := &rep.Newer[i]
		if r.Newer == "" || r.Error != "" || local[r.NewerRef] || !PullNewerFor(r.Reference, p) && r.Reference != force {
			continue
		}
		named, err := reference.ParseNormalizedNamed(r.NewerRef)
		if err != nil {
			r.Error = err.Error()
			continue
		}
		tagged, ok := named.(reference.NamedTagged)
		if !ok {
			continue
		}
		if deferWhy != "" {
			r.Note = "pull deferred: " + deferWhy
			deferred++
			log.Info("pull deferred", "image", r.ImageID, "reference", r.Reference, "newer", r.NewerRef, "reason", deferWhy)
			continue
		}
		if pl == nil {
			if pl, err = newPuller(store, sys); err != nil {
				r.Error = err.Error()
				log.Error("cannot pull", "error", err)
				continue
			}
			defer pl.Close()
		}
		auth, err := c.pullCredentials(ctx, tagged)
		if err != nil {
			r.Error = err.Error()
			continue
		}
		// The newer version for the platform of the image it supersedes.
		id, dgst, err := pl.pull(ctx, tagged, plat.get(byRef[r.Reference].Image), auth)
		if err != nil {
			r.Error = err.Error()
			log.Warn("pulling a newer version failed", "image", r.ImageID, "reference", r.Reference, "newer", r.NewerRef, "error", err)
			continue
		}
		n++
		local[r.NewerRef] = true
		r.PulledImageID = id
		rep.Events = append(rep.Events, report.Event{
			Kind: report.EventImagePulled, Severity: report.SeverityLow,
			Message:   fmt.Sprintf("pulled %s (%s), the newer version of %s, which is kept", r.NewerRef, dgst, r.Reference),
			Topic:     "refresh-newer:" + r.Reference,
			Image:     id,
			Reference: r.NewerRef,
			Digest:    dgst,
		})
	}
	return n, deferred
}
