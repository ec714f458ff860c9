// Package refresh is the `refresh` job: it asks each image's registry, with
// one HEAD per tag wherever possible, whether a tag held locally now points
// to other content; it records what it saw per reference, reports each new
// drift once, and in pull mode pulls the new content (signature policy
// enforced) while keeping the old image.
package refresh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/pins"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
)

// Options configure one run.
type Options struct {
	Policy policy.Refresh
	// Sys carries registries.conf, auth file, certs.d and signature policy
	// paths; nil means the system defaults.
	Sys    *types.SystemContext
	DryRun bool
	// Clock tells the time for the report and history; nil means
	// clock.Real.
	Clock clock.Clock
	// DeferPulls, when not empty, is why this run pulls nothing ("metered
	// connection", decided by the daemon): it checks and reports as usual,
	// and notes and counts each pull it leaves out.
	DeferPulls string
	// PullOnly restricts the run to this one reference and pulls it when
	// it drifted, and its newer version when one is found, whatever its
	// refresh mode (`stowage run refresh --pull REF`: a notification's
	// "Pull update"). A reference refresh does not check (mode off, not
	// local) or a pinned one is an error; nothing is ever removed.
	PullOnly string
	// tagsPage is the n of tag-list pages (tests); 0 means tagsPageSize.
	tagsPage int
}

// Result is the outcome for one reference.
type Result struct {
	Reference   string `json:"reference"`
	ImageID     string `json:"image_id"`
	LocalDigest string `json:"local_digest"`
	// RemoteDigest is the digest the tag resolves to for the image's
	// platform (the instance digest when the tag is a manifest list).
	RemoteDigest string `json:"remote_digest"`
	// ListDigest is the tag's manifest list digest, when it is one.
	ListDigest string             `json:"list_digest,omitempty"`
	Status     Status             `json:"status"`
	New        bool               `json:"new"`
	Mode       policy.RefreshMode `json:"mode"`
	// Registry is the endpoint (mirror or registry) that answered.
	Registry string `json:"registry,omitempty"`
	// PulledImageID is the new image's ID after a pull in pull mode.
	PulledImageID string `json:"pulled_image_id,omitempty"`
	Error         string `json:"error"`
	// Note says how the answer was obtained when that deserves mention
	// (a digest hashed from the body because the registry sent none).
	Note string `json:"note,omitempty"`
}

// Report is the refresh job's report.
type Report struct {
	report.Common
	Results []Result  `json:"results"`
	Skipped []Skipped `json:"skipped,omitempty"`
	// Registries holds the requests sent, per registry host.
	Registries   map[string]Counters `json:"registries"`
	HeadRequests int                 `json:"head_requests"`
	GetRequests  int                 `json:"get_requests"`
	// Newer is the newer-version check of each version-like local tag.
	Newer []NewerResult `json:"newer,omitempty"`
	// TagsRequests counts tag-list pages (one listing per repository).
	TagsRequests int `json:"tags_requests"`
	// PullsDeferred is why the run pulled nothing (Options.DeferPulls).
	PullsDeferred string `json:"pulls_deferred,omitempty"`

	// pullErr is the failed pull of a run asked to pull one reference.
	pullErr error
}

// ErrNothingChecked is a run in which every reference failed: at least one
// reference to check and not one answer (a broken registries.conf or
// auth.json, every registry unreachable). Such a run failed.
var ErrNothingChecked = errors.New("refresh: no reference could be checked")

// Err is nil when the run checked at least one reference (or had none to
// check); otherwise it wraps ErrNothingChecked with the first reference's
// error. A reference counts as checked when a registry answered for it
// (current, drifted or missing); blocked references were not meant to be
// checked, so a run with only blocked and no failed references is no
// failure.
func (r *Report) Err() error {
	if r.pullErr != nil {
		return r.pullErr
	}
	var failed []Result
	for _, res := range r.Results {
		switch res.Status {
		case StatusCurrent, StatusDrifted, StatusMissing:
			return nil
		case StatusError, StatusUnauthorized:
			failed = append(failed, res)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	// One line: the daemon keeps the last line of a worker's stderr.
	msg := strings.Join(strings.Fields(failed[0].Error), " ")
	return fmt.Errorf("%w: %d of %d references failed, e.g. %s: %s", ErrNothingChecked, len(failed), len(r.Results), failed[0].Reference, msg)
}

// Run checks every tagged registry reference in the store.
func Run(ctx context.Context, log *slog.Logger, store storage.Store, db *state.DB, o Options) (*Report, error) {
	t0 := time.Now() // for debug timings; now() may be a test clock
	now := clock.Real.Now
	if o.Clock != nil {
		now = o.Clock.Now
	}
	sys := o.Sys
	if sys == nil {
		sys = &types.SystemContext{}
	}
	rep := &Report{Common: report.Common{Job: report.JobRefresh, DryRun: o.DryRun, Started: now(), Events: []report.Event{}}}
	// registries.conf is cached per process; a run must see the current file.
	sysregistriesv2.InvalidateCache()

	images, err := localImages(store)
	if err != nil {
		return nil, err
	}
	targets, skipped := Plan(images, o.Policy)
	rep.Skipped = skipped
	pullOnly := ""
	if o.PullOnly != "" {
		pullOnly = NormalizeReference(o.PullOnly)
		if targets, err = restrictTo(targets, skipped, pullOnly, db); err != nil {
			return nil, err
		}
		rep.Skipped = nil
	}
	log.Debug("planned", "images", len(images), "targets", len(targets), "skipped", len(skipped), "elapsed", time.Since(t0))
	refs := make([]string, len(targets))
	for i, t := range targets {
		refs[i] = t.Reference
	}
	lists := map[string]map[string]string{}
	listed := map[string]time.Time{}
	if len(refs) > 0 {
		recs, err := loadRecords(db, refs)
		if err != nil {
			return nil, err
		}
		for ref, r := range recs {
			lists[ref] = r.Lists
			listed[ref] = r.NewerChecked
		}
	}

	c := newClient(sys, log, o.Policy.Concurrency, o.Policy.PerRegistry, o.Policy.Budget, o.Policy.Timeout.Duration)
	if o.Policy.Rate > 0 {
		c.interval = time.Second / time.Duration(o.Policy.Rate)
	}
	plat := &platforms{store: store, cache: map[string]LocalImage{}}
	results := make([]Result, len(targets))
	obs := make([]*observation, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], obs[i] = c.check(ctx, t, plat, lists[t.Reference])
		}()
	}
	wg.Wait()
	log.Debug("checked", "targets", len(targets), "elapsed", time.Since(t0))

	var toCommit []observation
	for _, ob := range obs {
		if ob != nil {
			toCommit = append(toCommit, *ob)
		}
	}
	if len(toCommit) > 0 {
		isNew, err := commit(db, toCommit, now(), o.DryRun)
		if err != nil {
			return nil, err
		}
		for i := range results {
			results[i].New = results[i].Status == StatusDrifted && isNew[results[i].Reference]
		}
	}

	log.Debug("history committed", "elapsed", time.Since(t0))
	for i := range results {
		r := &results[i]
		if r.Status == StatusDrifted && r.New {
			rep.Events = append(rep.Events, report.Event{
				Kind: report.EventDriftDetected, Severity: report.SeverityNormal,
				Message:   fmt.Sprintf("%s now points to %s (local image %.12s)", r.Reference, r.RemoteDigest, r.ImageID),
				Topic:     "refresh:" + r.Reference,
				Image:     r.ImageID,
				Reference: r.Reference,
				Digest:    r.RemoteDigest,
			})
		}
	}
	if ls := OrderListings(PlanNewer(targets, o.Policy), listed); len(ls) > 0 {
		rep.Newer = c.checkNewer(ctx, ls, o.Policy, o.tagsPage)
		if err := commitNewer(db, rep.Newer, now(), o.DryRun); err != nil {
			return nil, err
		}
		rep.Events = append(rep.Events, newerEvents(rep.Newer)...)
		log.Debug("newer versions checked", "repositories", len(ls), "elapsed", time.Since(t0))
	}
	pulled, deferred := pullDrifted(ctx, log, store, sys, c, targets, results, o.DryRun, o.DeferPulls, rep)
	pulledNewer, deferredNewer := pullNewer(ctx, log, store, sys, c, plat, targets, images, o.Policy, pullOnly, o.DryRun, o.DeferPulls, rep)
	// A pull someone asked for (Options.PullOnly) that failed fails the
	// run: they are told, rather than shown a run that succeeded.
	if pullOnly != "" && !o.DryRun && o.DeferPulls == "" && len(results) == 1 && results[0].Status == StatusDrifted && results[0].Error != "" {
		rep.pullErr = fmt.Errorf("refresh: pulling %s failed: %s", pullOnly, strings.Join(strings.Fields(results[0].Error), " "))
	}
	oldest, err := oldestPendingDrift(db, results)
	if err != nil {
		return nil, err
	}

	rep.Results = results
	rep.Registries = c.counters()
	for _, cnt := range rep.Registries {
		rep.HeadRequests += cnt.Head
		rep.GetRequests += cnt.Get
		rep.TagsRequests += cnt.Tags
	}
	rep.Metrics, rep.Summary = summarize(results, rep, pulled)
	summarizeNewer(rep, pulledNewer)
	summarizeDeferred(rep, o.DeferPulls, deferred+deferredNewer)
	if !oldest.IsZero() {
		rep.Metrics["drift_oldest_first_seen"] = float64(oldest.Unix())
	}
	rep.Finished = now()
	return rep, nil
}

// restrictTo keeps the target ref alone, in pull mode. It refuses a
// reference refresh skips and one pinned by name: pulling would move the
// pinned name off the image the user pinned.
func restrictTo(targets []Target, skipped []Skipped, ref string, db *state.DB) ([]Target, error) {
	i := slices.IndexFunc(targets, func(t Target) bool { return t.Reference == ref })
	if i < 0 {
		for _, s := range skipped {
			if NormalizeReference(s.Name) == ref {
				return nil, fmt.Errorf("refresh: not pulling %s: %s", ref, s.Reason)
			}
		}
		return nil, fmt.Errorf("refresh: not pulling %s: no local image has this name", ref)
	}
	ps, err := pins.List(db)
	if err != nil {
		return nil, err
	}
	if p := pins.NewSet(ps).Match("", []string{ref}); p != "" {
		return nil, fmt.Errorf("refresh: not pulling %s: it is pinned (stowage unpin %s)", ref, p)
	}
	t := targets[i]
	t.Mode = policy.RefreshPull
	return []Target{t}, nil
}

// pullDrifted pulls the drifted references whose mode is pull; it returns
// how many were pulled, and how many were left out because pulls are
// deferred (deferWhy not empty).
func pullDrifted(ctx context.Context, log *slog.Logger, store storage.Store, sys *types.SystemContext, c *client, targets []Target, results []Result, dryRun bool, deferWhy string, rep *Report) (pulled, deferred int) {
	if dryRun {
		return 0, 0
	}
	var p *puller
	n := 0
	for i := range results {
		r := &results[i]
		if r.Status != StatusDrifted || targets[i].Mode != policy.RefreshPull {
			continue
		}
		if deferWhy != "" {
			r.Note = "pull deferred: " + deferWhy
			deferred++
			log.Info("pull deferred", "image", r.ImageID, "reference", r.Reference, "reason", deferWhy)
			continue
		}
		if p == nil {
			var err error
			if p, err = newPuller(store, sys); err != nil {
				r.Error = err.Error()
				log.Error("cannot pull", "error", err)
				continue
			}
			defer p.Close()
		}
		auth, err := c.pullCredentials(ctx, targets[i].Named)
		if err != nil {
			r.Error = err.Error()
			log.Warn("pull failed", "image", r.ImageID, "reference", r.Reference, "error", err)
			continue
		}
		id, dgst, err := p.pull(ctx, targets[i].Named, targets[i].Image, auth)
		if err != nil {
			r.Error = err.Error()
			log.Warn("pull failed", "image", r.ImageID, "reference", r.Reference, "error", err)
			continue
		}
		n++
		r.PulledImageID = id
		rep.Events = append(rep.Events, report.Event{
			Kind: report.EventImagePulled, Severity: report.SeverityLow,
			Message:   fmt.Sprintf("pulled %s (%s); the previous image %.12s is kept", r.Reference, dgst, r.ImageID),
			Topic:     "refresh:" + r.Reference,
			Image:     id,
			Reference: r.Reference,
			Digest:    dgst,
		})
	}
	return n, deferred
}

// summarizeDeferred says in the report, its summary and its figures that
// (and why) pulls were left out.
func summarizeDeferred(rep *Report, why string, n int) {
	rep.PullsDeferred = why
	rep.Metrics[report.MetricPullsDeferred] = float64(n)
	if why != "" && n > 0 {
		rep.Summary += fmt.Sprintf("; pulls deferred: %s (%d not pulled)", why, n)
	}
}

func summarize(results []Result, rep *Report, pulled int) (map[string]float64, string) {
	count := map[Status]int{}
	newDrifts := 0
	for _, r := range results {
		count[r.Status]++
		if r.New {
			newDrifts++
		}
	}
	errs := count[StatusError] + count[StatusUnauthorized]
	m := map[string]float64{
		"checked":       float64(len(results)),
		"drifted":       float64(count[StatusDrifted]),
		"new_drifts":    float64(newDrifts),
		"current":       float64(count[StatusCurrent]),
		"missing":       float64(count[StatusMissing]),
		"blocked":       float64(count[StatusBlocked]),
		"errors":        float64(errs),
		"pulled":        float64(pulled),
		"drift_pending": float64(pendingDrifts(results)),
		"head_requests": float64(rep.HeadRequests),
		"get_requests":  float64(rep.GetRequests),
	}
	var parts []string
	parts = append(parts, fmt.Sprintf("%d references checked", len(results)))
	for _, s := range []Status{StatusCurrent, StatusDrifted, StatusMissing, StatusBlocked, StatusUnauthorized, StatusError} {
		if count[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[s], s))
		}
	}
	if newDrifts > 0 {
		parts = append(parts, fmt.Sprintf("%d new drifts", newDrifts))
	}
	if pulled > 0 {
		parts = append(parts, fmt.Sprintf("%d pulled", pulled))
	}
	parts = append(parts, fmt.Sprintf("%d HEAD, %d GET", rep.HeadRequests, rep.GetRequests))
	return m, strings.Join(parts, ", ")
}

// check resolves one target, trying the pull sources in order.
func (c *client) check(ctx context.Context, t Target, plat *platforms, lists map[string]string) (Result, *observation) {
	res := Result{Reference: t.Reference, ImageID: t.Image.ID, LocalDigest: t.Image.Digest, Mode: t.Mode}
	srcs, err := c.sources(t.Named)
	if err != nil {
		res.Status, res.Error = statusOf(err), err.Error()
		return res, nil
	}
	var errs []error
	for _, s := range srcs {
		remote, ob, err := c.checkSource(ctx, s, t, plat, lists)
		if err != nil {
			c.log.Debug("pull source failed", "reference", t.Reference, "registry", s.host.name, "error", err)
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		res.Registry = s.host.name
		res.Status, res.RemoteDigest = Classify(t.Image, remote)
		if remote.Instance != "" {
			res.ListDigest = remote.Digest
		}
		res.Note = remote.Note
		ob.ref, ob.digest, ob.drift = t.Reference, res.RemoteDigest, res.Status == StatusDrifted
		return res, ob
	}
	// The registry itself is the last source; its answer classifies.
	last := errs[len(errs)-1]
	res.Status = statusOf(last)
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	res.Error = strings.Join(msgs, "; ")
	return res, nil
}

func (c *client) checkSource(ctx context.Context, s source, t Target, plat *platforms, lists map[string]string) (Remote, *observation, error) {
	tag := t.Named.Tag()
	mi, err := c.manifest(ctx, s.host, s.named, tag, false)
	if err != nil {
		return Remote{}, nil, err
	}
	ob := &observation{}
	remote := Remote{Digest: mi.digest, Note: mi.note}
	multi := mi.mediaType == "" || manifest.MIMETypeIsMultiImage(mi.mediaType)
	if !NeedsList(t.Image, mi.digest, multi) {
		return remote, ob, nil
	}
	img := plat.get(t.Image)
	key := listKey(mi.digest, img)
	if inst, ok := lists[key]; ok {
		remote.Instance = inst
		return remote, ob, nil
	}
	if mi.body == nil {
		if mi, err = c.manifest(ctx, s.host, s.named, mi.digest, true); err != nil {
			return Remote{}, nil, err
		}
	}
	if !manifest.MIMETypeIsMultiImage(mi.mediaType) {
		return remote, ob, nil
	}
	inst, found, err := chooseInstance(mi.body, mi.mediaType, img)
	if err != nil {
		return Remote{}, nil, fmt.Errorf("manifest list of %s: %w", t.Reference, err)
	}
	if !found {
		// Our platform left the list: that is drift, to the list itself.
		c.log.Debug("no instance for the image's platform", "reference", t.Reference, "os", img.OS, "arch", img.Architecture)
		return remote, ob, nil
	}
	remote.Instance = inst
	ob.listKey, ob.inst = key, remote.Instance
	return remote, ob, nil
}

func statusOf(err error) Status {
	switch {
	case errors.Is(err, ErrNotFound):
		return StatusMissing
	case errors.Is(err, ErrUnauthorized):
		return StatusUnauthorized
	case errors.Is(err, ErrBlocked):
		return StatusBlocked
	}
	return StatusError
}

// localImages reads the store's images.
func localImages(store storage.Store) ([]LocalImage, error) {
	imgs, err := store.Images()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	out := make([]LocalImage, 0, len(imgs))
	for _, img := range imgs {
		li := LocalImage{ID: img.ID, Names: img.Names, Digest: img.Digest.String()}
		for _, d := range img.Digests {
			li.Digests = append(li.Digests, d.String())
		}
		out = append(out, li)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// platforms reads images' os/arch/variant from their config, lazily: only
// tags that became manifest lists need it.
type platforms struct {
	store storage.Store
	mu    sync.Mutex
	cache map[string]LocalImage
}

func (p *platforms) get(img LocalImage) LocalImage {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.cache[img.ID]; ok {
		return c
	}
	if blob, err := p.store.ImageBigData(img.ID, storage.ImageDigestBigDataKey); err == nil {
		if m, err := manifest.FromBlob(blob, manifest.GuessMIMEType(blob)); err == nil {
			if cfg, err := p.store.ImageBigData(img.ID, m.ConfigInfo().Digest.String()); err == nil {
				var c struct {
					OS           string `json:"os"`
					Architecture string `json:"architecture"`
					Variant      string `json:"variant"`
				}
				if json.Unmarshal(cfg, &c) == nil {
					img.OS, img.Architecture, img.Variant = c.OS, c.Architecture, c.Variant
				}
			}
		}
	}
	// Unknown fields fall back to this host's platform in ChooseInstance.
	p.cache[img.ID] = img
	return img
}

// pending reports whether r is a drift still waiting: drifted and not pulled.
func pending(r Result) bool { return r.Status == StatusDrifted && r.PulledImageID == "" }

func pendingDrifts(results []Result) int {
	n := 0
	for _, r := range results {
		if pending(r) {
			n++
		}
	}
	return n
}

// oldestPendingDrift is when the oldest pending drift's remote digest was
// first seen, from the history (zero when no drift is pending). In a dry run
// a digest seen for the first time is not in the history and does not count.
func oldestPendingDrift(db *state.DB, results []Result) (time.Time, error) {
	var refs []string
	for _, r := range results {
		if pending(r) {
			refs = append(refs, r.Reference)
		}
	}
	if len(refs) == 0 {
		return time.Time{}, nil
	}
	recs, err := loadRecords(db, refs)
	if err != nil {
		return time.Time{}, err
	}
	var oldest time.Time
	for _, r := range results {
		if !pending(r) {
			continue
		}
		for _, seen := range recs[r.Reference].Seen {
			if seen.Digest == r.RemoteDigest && (oldest.IsZero() || seen.FirstSeen.Before(oldest)) {
				oldest = seen.FirstSeen
			}
		}
	}
	return oldest, nil
}
