// Package prune is the quota-aware image pruning job: a pure planner that
// decides, from a store snapshot and the policy, which images and orphan
// layers go and why every other image stays, and an executor that applies
// the plan with containers/storage, re-checking under the storage locks.
package prune

import (
	"sort"
	"time"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/policy/imageref"
)

// Reason says why an image or layer is removed or kept.
type Reason string

// Removal reasons.
const (
	ReasonDangling  Reason = "dangling"   // no names, no children, older than min_age
	ReasonOrphan    Reason = "orphan"     // layer no image or container reaches
	ReasonUnusedFor Reason = "unused_for" // not used for longer than unused_for
	ReasonQuota     Reason = "quota"      // least recently used, under pressure
)

// Reasons an image is kept (never removed).
const (
	KeptReadOnly     Reason = "read_only"    // in an additional, read-only store
	KeptInUse        Reason = "in_use"       // a container uses it
	KeptPinned       Reason = "pinned"       // stowage pin
	KeptQuadlet      Reason = "quadlet"      // referenced by a Quadlet unit
	KeptKeep         Reason = "keep"         // matches a keep glob
	KeptKeepLast     Reason = "keep_last"    // among the newest of its repository
	KeptMinAge       Reason = "min_age"      // pulled less than min_age ago
	KeptAgeUnknown   Reason = "age_unknown"  // no layer tells when it was pulled
	KeptIntermediate Reason = "intermediate" // no names but other images build on it
	KeptNotNeeded    Reason = "not_needed"   // eligible, but no rule asks for it
	KeptGone         Reason = "gone"         // removed by someone else since the plan
	KeptInconsistent Reason = "inconsistent" // the store's metadata does not add up
)

// Matcher tells whether an image is protected by an external list (pins,
// Quadlet units) and by which entry ("" = not protected).
type Matcher interface {
	Match(id string, names []string) string
}

// Quota is the user's disk quota on the filesystem holding the graphroot.
type Quota struct {
	SoftLimitBytes int64 // 0 = no soft limit
	HardLimitBytes int64
	UsedBytes      int64
}

// Input is everything the planner reads. It does no I/O.
type Input struct {
	Snapshot *layergraph.Snapshot
	Policy   policy.Prune
	Now      time.Time
	// LastUse returns the last recorded use of an image (zero = none).
	LastUse func(id string, names []string) time.Time
	Pins    Matcher
	Quadlet Matcher
	Quota   *Quota // nil when the filesystem enforces none
	// Previous are the store counts the last run recorded (nil: none).
	Previous *Counts
}

// Item is one removal in a plan, or one image kept.
type Item struct {
	ID    string   `json:"id"`
	Names []string `json:"names"`
	// Layer is true for an orphan layer (ID is a layer ID).
	Layer  bool   `json:"layer,omitempty"`
	Reason Reason `json:"reason"`
	// Detail explains the reason (the glob, pin, unit or container).
	Detail string `json:"detail,omitempty"`
	// Bytes freed by this removal given the ones before it; Cumulative is
	// the running total.
	Bytes      int64     `json:"bytes"`
	Cumulative int64     `json:"cumulative_bytes,omitempty"`
	LastUsed   time.Time `json:"last_used,omitzero"`
	// Layers are the layer IDs the removal deletes (DeleteImage's walk).
	Layers []string `json:"layers,omitempty"`
}

// Plan is the planner's decision.
type Plan struct {
	LimitBytes int64 `json:"limit_bytes"` // effective limit, 0 = none
	UsageBytes int64 `json:"usage_bytes"` // store usage on disk (inventory.StoreBytes)
	// QuotaUsedBytes is the user's quota usage when a quota applies.
	QuotaUsedBytes int64 `json:"quota_used_bytes,omitempty"`
	// Quota is the disk quota that applied (nil: none).
	Quota *Quota `json:"-"`
	// NeedBytes is what pressure asks to free (0 = no pressure).
	NeedBytes        int64  `json:"need_bytes"`
	Pressure         string `json:"pressure,omitempty"` // limit, quota or min_free
	PlannedFreeBytes int64  `json:"planned_free_bytes"`
	Removals         []Item `json:"removals"`
	Kept             []Item `json:"kept"`
	// Refused lists why the store's metadata is inconsistent; when it is
	// not empty nothing is removed (see Consistency).
	Refused []string `json:"refused,omitempty"`
}

// StoreUsage is the bytes a store's writable layers, images and containers
// take on disk (allocated blocks; recorded sizes where the driver's
// directories are not measured): the figure limits and watermarks apply to.
func StoreUsage(s *layergraph.Snapshot) int64 {
	return inventory.StoreBytes(s)
}

// need computes the effective limit and how many bytes pressure asks for.
func need(in *Input, usage int64) (limit, needBytes int64, why string) {
	p, fs := in.Policy, in.Snapshot.FS
	if !p.Quota.IsZero() {
		limit = p.Quota.Resolve(fs.SizeBytes)
		if limit > 0 && usage > p.HighWatermark.Of(limit) {
			needBytes, why = usage-p.LowWatermark.Of(limit), "limit"
		}
	}
	if q := in.Quota; q != nil && q.SoftLimitBytes > 0 {
		if limit == 0 || q.SoftLimitBytes < limit {
			limit = q.SoftLimitBytes
		}
		if q.UsedBytes > p.HighWatermark.Of(q.SoftLimitBytes) {
			if n := q.UsedBytes - p.LowWatermark.Of(q.SoftLimitBytes); n > needBytes {
				needBytes, why = n, "quota"
			}
		}
	}
	if !p.MinFree.IsZero() && fs.SizeBytes > 0 {
		floor := p.MinFree.Resolve(fs.SizeBytes)
		if fs.FreeBytes < floor {
			if n := floor - fs.FreeBytes; n > needBytes {
				needBytes, why = n, "min_free"
			}
		}
	}
	return limit, needBytes, why
}

// imageFacts are what the planner derives once per image.
type imageFacts struct {
	img      *layergraph.Image
	pulled   time.Time // top layer creation (≈ pull time)
	lastUsed time.Time // max(record, pulled)
	kept     Reason
	detail   string
}

// Build makes the plan. It never fails: anything it cannot decide is kept.
func Build(in *Input) *Plan {
	s := in.Snapshot
	p := in.Policy
	usage := StoreUsage(s)
	plan := &Plan{UsageBytes: usage, Removals: []Item{}, Kept: []Item{}}
	if in.Quota != nil {
		plan.QuotaUsedBytes = in.Quota.UsedBytes
		q := *in.Quota
		plan.Quota = &q
	}
	plan.LimitBytes, plan.NeedBytes, plan.Pressure = need(in, usage)
	// Fail closed: on inconsistent metadata every image stays, and so does
	// every layer.
	if plan.Refused = Consistency(s, in.Previous, in.Now); len(plan.Refused) > 0 {
		for _, img := range s.Images {
			plan.Kept = append(plan.Kept, Item{ID: img.ID, Names: img.Names, Reason: KeptInconsistent, Detail: "store metadata inconsistent"})
		}
		sort.SliceStable(plan.Kept, func(i, j int) bool { return plan.Kept[i].ID < plan.Kept[j].ID })
		return plan
	}

	g := layergraph.NewGraph(s)
	usedBy := make(map[string]string, len(s.Containers))
	for _, c := range s.Containers {
		if c.ImageID != "" {
			usedBy[c.ImageID] = c.ID
		}
	}

	facts := make([]imageFacts, len(s.Images))
	for i := range s.Images {
		img := &s.Images[i]
		f := &facts[i]
		f.img = img
		if l, ok := g.Layer(img.TopLayer); ok {
			f.pulled = l.Created
		}
		f.lastUsed = f.pulled
		if in.LastUse != nil {
			if t := in.LastUse(img.ID, img.Names); t.After(f.lastUsed) {
				f.lastUsed = t
			}
		}
		f.kept, f.detail = protect(in, g, img, f.pulled, usedBy)
	}
	keepLast(facts, p.KeepLast)

	sim := layergraph.NewSimulation(s)
	var total int64
	add := func(f *imageFacts, why Reason) {
		r := sim.Remove(f.img.ID)
		total += r.Bytes
		plan.Removals = append(plan.Removals, Item{
			ID: f.img.ID, Names: f.img.Names, Reason: why, Bytes: r.Bytes,
			Cumulative: total, LastUsed: f.lastUsed, Layers: r.Layers,
		})
		f.kept = "-" // placed
	}

	// Always: dangling images, then images unused for too long (LRU order).
	order := make([]*imageFacts, 0, len(facts))
	for i := range facts {
		order = append(order, &facts[i])
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if !a.lastUsed.Equal(b.lastUsed) {
			return a.lastUsed.Before(b.lastUsed)
		}
		return a.img.ID < b.img.ID
	})
	if p.Dangling {
		for _, f := range order {
			// The graph's rule, df's too (an intermediate image is
			// kept by protect already).
			if f.kept == "" && g.Dangling(f.img) {
				add(f, ReasonDangling)
			}
		}
	}
	if p.UnusedFor.Duration > 0 {
		for _, f := range order {
			if f.kept == "" && in.Now.Sub(f.lastUsed) > p.UnusedFor.Duration {
				add(f, ReasonUnusedFor)
			}
		}
	}
	// Orphan layers are independent of images: no image reaches them.
	if p.OrphanLayers {
		for _, it := range orphans(in, g) {
			// The model frees an orphan's hard-linked inodes too when it
			// was their last layer.
			it.Bytes = sim.Apply("", []string{it.ID})
			total += it.Bytes
			it.Cumulative = total
			plan.Removals = append(plan.Removals, it)
		}
	}
	// Under pressure: least recently used first until the need is met.
	for _, f := range order {
		if total >= plan.NeedBytes {
			break
		}
		if f.kept == "" {
			add(f, ReasonQuota)
		}
	}
	plan.PlannedFreeBytes = total
	for _, f := range order {
		switch f.kept {
		case "-":
			continue
		case "":
			f.kept = KeptNotNeeded
		}
		plan.Kept = append(plan.Kept, Item{ID: f.img.ID, Names: f.img.Names, Reason: f.kept, Detail: f.detail, LastUsed: f.lastUsed})
	}
	sort.SliceStable(plan.Kept, func(i, j int) bool { return plan.Kept[i].ID < plan.Kept[j].ID })
	return plan
}

// protect returns why an image must stay regardless of pressure ("" = it
// may go). keep_last is decided afterwards, across each repository.
func protect(in *Input, g *layergraph.Graph, img *layergraph.Image, pulled time.Time, usedBy map[string]string) (Reason, string) {
	if img.ReadOnly {
		return KeptReadOnly, ""
	}
	if c, ok := usedBy[img.ID]; ok {
		return KeptInUse, "container " + c
	}
	if in.Pins != nil {
		if m := in.Pins.Match(img.ID, img.Names); m != "" {
			return KeptPinned, m
		}
	}
	if in.Quadlet != nil {
		if m := in.Quadlet.Match(img.ID, img.Names); m != "" {
			return KeptQuadlet, m
		}
	}
	for _, g := range in.Policy.Keep {
		for _, n := range img.Names {
			if imageref.MatchGlob(g, n) {
				return KeptKeep, g
			}
		}
	}
	if img.TopLayer != "" && pulled.IsZero() {
		return KeptAgeUnknown, "top layer " + img.TopLayer + " missing"
	}
	if !pulled.IsZero() && in.Now.Sub(pulled) < in.Policy.MinAge.Duration {
		return KeptMinAge, "pulled " + pulled.UTC().Format(time.RFC3339)
	}
	if len(img.Names) == 0 && !pulled.IsZero() && in.Now.Sub(pulled) < NamelessImageFloor {
		// A pull records its image without names and names it a moment
		// later: a young nameless image may be one in flight.
		return KeptMinAge, "nameless and younger than " + NamelessImageFloor.String() + " (a pull may still be naming it)"
	}
	if g.Intermediate(img) {
		// Another image is built on this one: podman's "intermediate",
		// not dangling (the rule df and images use too).
		return KeptIntermediate, ""
	}
	return "", ""
}

// keepLast protects the newest n images (by pull time) of each repository.
func keepLast(facts []imageFacts, n int) {
	if n <= 0 {
		return
	}
	repos := map[string][]*imageFacts{}
	for i := range facts {
		f := &facts[i]
		seen := map[string]bool{}
		for _, name := range f.img.Names {
			r := imageref.Repository(name)
			if !seen[r] {
				seen[r] = true
				repos[r] = append(repos[r], f)
			}
		}
	}
	for repo, fs := range repos {
		sort.SliceStable(fs, func(i, j int) bool {
			if !fs[i].pulled.Equal(fs[j].pulled) {
				return fs[i].pulled.After(fs[j].pulled)
			}
			if !fs[i].img.Created.Equal(fs[j].img.Created) {
				return fs[i].img.Created.After(fs[j].img.Created)
			}
			return fs[i].img.ID < fs[j].img.ID
		})
		for i := 0; i < n && i < len(fs); i++ {
			if fs[i].kept == "" {
				fs[i].kept, fs[i].detail = KeptKeepLast, repo
			}
		}
	}
}

// OrphanLayerFloor is the age below which no orphan layer is removed,
// whatever min_age says. A pull writes its layers one by one and records
// the image only after the last one: until then its finished layers are
// reached by nothing, exactly like the leftovers of an interrupted pull,
// and the incomplete flag is set only while a layer is being written.
// Removing them made concurrent pulls fail with `creating image …: layer
// not known`. An hour outlasts any pull worth the name.
const OrphanLayerFloor = time.Hour

// NamelessImageFloor is the age below which no image without names is
// removed, whatever min_age says. containers/image creates a pulled image
// without names, writes its manifest, config and signatures, then names it:
// a window of moments, not minutes, unlike a pull's layers (hence a floor
// far below OrphanLayerFloor, so a dangling image still goes soon).
const NamelessImageFloor = 2 * time.Minute

// orphanMinAge is the age an orphan layer must reach: min_age, but never
// less than OrphanLayerFloor.
func orphanMinAge(p policy.Prune) time.Duration {
	return max(p.MinAge.Duration, OrphanLayerFloor)
}

// orphans lists the layers no image and no container reaches, complete,
// older than min_age and OrphanLayerFloor, leaves first (DeleteLayer
// refuses a layer with children).
func orphans(in *Input, g *layergraph.Graph) []Item {
	ls := g.Orphans(func(l *layergraph.Layer) bool {
		return !l.ReadOnly && !l.Incomplete && !l.Created.IsZero() && in.Now.Sub(l.Created) >= orphanMinAge(in.Policy)
	})
	out := make([]Item, 0, len(ls))
	for _, l := range ls {
		out = append(out, Item{ID: l.ID, Names: []string{}, Layer: true, Reason: ReasonOrphan, Bytes: l.Bytes()})
	}
	return out
}
