package prune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	units "github.com/docker/go-units"
	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/prune/quadlet"
	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/lastuse"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/pins"
	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/policy/imageref"
)

// Report is what `stowage run prune --format json` prints.
type Report struct {
	report.Common
	LimitBytes       int64  `json:"limit_bytes"`
	UsageBeforeBytes int64  `json:"usage_before_bytes"`
	UsageAfterBytes  int64  `json:"usage_after_bytes"`
	QuotaUsedBytes   int64  `json:"quota_used_bytes,omitempty"`
	NeedBytes        int64  `json:"need_bytes"`
	Pressure         string `json:"pressure,omitempty"`
	PlannedFreeBytes int64  `json:"planned_free_bytes"`
	FreedBytes       int64  `json:"freed_bytes"`
	// Removed lists what was removed (in a dry run: what would be), in order.
	Removed []Item `json:"removed"`
	// Kept lists every image that stays, with why; planned removals that
	// the re-check at apply time refused are here too.
	Kept []Item `json:"kept"`
	// Errors are removals that failed for another reason (left in place).
	Errors []string `json:"errors,omitempty"`
	// Refused lists why the store's metadata is inconsistent: nothing was
	// removed (the CLI exits non-zero).
	Refused []string `json:"refused,omitempty"`
}

// QuotaFunc reads the user's quota on the filesystem holding path;
// quota.ErrNoQuota means none applies.
type QuotaFunc func(path string) (quota.Usage, error)

// Job runs the prune job on one store.
type Job struct {
	Store  storage.Store
	State  *state.DB // pins and the last-use record; required
	Policy policy.Prune
	// Events is podman's event log (nil: containers seen at scans only).
	Events lastuse.EventSource
	// QuadletDirs is the Quadlet search path (quadlet.SystemDirs,
	// quadlet.UserDirs or quadlet.ExpandDirs), read for units referencing
	// images; a unit that cannot be read or resolved fails the run.
	QuadletDirs []string
	// Quota reads the user's disk quota (nil: none).
	Quota QuotaFunc
	Clock clock.Clock // nil = clock.Real
	Log   *slog.Logger
	// Progress receives a progress line while removing (nil: none); the
	// CLI passes stderr only when it is a terminal.
	Progress io.Writer
}

func (j *Job) now() time.Time {
	if j.Clock != nil {
		return j.Clock.Now()
	}
	return clock.Real.Now()
}

// Prepare takes the snapshot, updates the last-use record and builds the
// plan. Anything that could protect an image and cannot be read (pins,
// Quadlet units, the state database) is an error: pruning blind is not
// an option.
func (j *Job) Prepare(ctx context.Context) (*layergraph.Snapshot, *Plan, error) {
	now := j.now()
	snap, err := inventory.Collect(ctx, j.Store, "", now)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: snapshot: %w", err)
	}
	if err := lastuse.Scan(ctx, j.State, snap, j.Events, now); err != nil {
		if !errors.Is(err, lastuse.ErrEvents) {
			return nil, nil, fmt.Errorf("prune: %w", err)
		}
		j.Log.Warn("podman events unavailable; last use from containers and pull times only", "error", err)
	}
	rec, err := lastuse.Load(j.State)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: %w", err)
	}
	ps, err := pins.List(j.State)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: reading pins: %w", err)
	}
	qrefs, err := quadlet.Scan(j.QuadletDirs)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: %w", err)
	}
	prev, err := LoadCounts(j.State)
	if err != nil {
		return nil, nil, fmt.Errorf("prune: %w", err)
	}
	in := &Input{
		Snapshot: snap, Policy: j.Policy, Now: now,
		LastUse: rec.Of, Pins: pins.NewSet(ps), Quadlet: qrefs, Previous: prev,
	}
	if j.Quota != nil {
		u, err := j.Quota(snap.GraphRoot)
		switch {
		case err == nil:
			in.Quota = &Quota{SoftLimitBytes: u.SoftLimitBytes, HardLimitBytes: u.HardLimitBytes, UsedBytes: u.UsedBytes}
		case errors.Is(err, quota.ErrNoQuota):
		default:
			j.Log.Warn("reading the disk quota failed; ignoring it", "error", err)
		}
	}
	return snap, Build(in), nil
}

// Run plans and, unless dryRun, applies the plan.
func (j *Job) Run(ctx context.Context, dryRun bool) (*Report, error) {
	if j.Log == nil {
		j.Log = slog.New(slog.DiscardHandler)
	}
	started := j.now()
	if !j.Policy.Enabled && !dryRun {
		return &Report{
			Common:  report.Common{Job: report.JobPrune, Started: started, Finished: j.now(), Summary: "prune is disabled by the policy ([prune] enabled = false)", Events: []report.Event{}},
			Removed: []Item{}, Kept: []Item{},
		}, nil
	}
	snap, plan, err := j.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	r := &Report{
		Common:           report.Common{Job: report.JobPrune, DryRun: dryRun, Started: started, Events: []report.Event{}},
		LimitBytes:       plan.LimitBytes,
		UsageBeforeBytes: plan.UsageBytes,
		UsageAfterBytes:  plan.UsageBytes,
		QuotaUsedBytes:   plan.QuotaUsedBytes,
		NeedBytes:        plan.NeedBytes,
		Pressure:         plan.Pressure,
		PlannedFreeBytes: plan.PlannedFreeBytes,
		Removed:          []Item{},
		Kept:             plan.Kept,
		Refused:          plan.Refused,
	}
	if len(plan.Refused) > 0 {
		for _, why := range plan.Refused {
			j.Log.Error("prune refused: store metadata inconsistent; nothing removed", "reason", why)
		}
		r.Finished = j.now()
		r.Metrics = map[string]float64{"usage_bytes": float64(r.UsageBeforeBytes), "refused": 1}
		r.Summary = fmt.Sprintf("%s: nothing removed: %s", ErrInconsistent, strings.Join(plan.Refused, "; "))
		return r, nil
	}
	if plan.NeedBytes > 0 {
		r.Events = append(r.Events, report.Event{
			Kind: report.EventQuotaExceeded, Severity: report.SeverityNormal, Topic: "prune-quota",
			Message: fmt.Sprintf("storage over its %s: %s to free (usage %s, limit %s)", plan.Pressure,
				units.BytesSize(float64(plan.NeedBytes)), units.BytesSize(float64(plan.UsageBytes)), units.BytesSize(float64(plan.LimitBytes))),
			Bytes: plan.NeedBytes,
		})
	}
	if dryRun {
		r.Removed = plan.Removals
	} else {
		j.apply(ctx, snap, plan, r)
		if after, err := inventory.Collect(ctx, j.Store, "", j.now()); err == nil {
			r.UsageAfterBytes = StoreUsage(after)
			// The baseline the next run's collapse check compares with.
			if err := SaveCounts(j.State, CountsOf(after, after.Taken)); err != nil {
				j.Log.Warn("recording store counts failed", "error", err)
			}
		} else {
			j.Log.Warn("re-measuring usage failed", "error", err)
		}
	}
	r.Finished = j.now()
	r.Metrics = map[string]float64{
		"freed_bytes":         float64(r.FreedBytes),
		"planned_free_bytes":  float64(r.PlannedFreeBytes),
		"usage_bytes":         float64(r.UsageAfterBytes),
		"limit_bytes":         float64(r.LimitBytes),
		"removed_images":      float64(countImages(r.Removed)),
		"removed_layers":      float64(len(r.Removed) - countImages(r.Removed)),
		"kept_images":         float64(len(r.Kept)),
		"usage_before_bytes":  float64(r.UsageBeforeBytes),
		"pressure_need_bytes": float64(r.NeedBytes),
		"refused":             0,
	}
	if !dryRun {
		// What pressure asked for and this run could not free (in use,
		// kept, too young): the figure an alert watches.
		r.Metrics["shortfall_bytes"] = float64(max(0, r.NeedBytes-r.FreedBytes))
	}
	if q := plan.Quota; q != nil {
		r.Metrics["quota_used_bytes"] = float64(q.UsedBytes)
		r.Metrics["quota_soft_limit_bytes"] = float64(q.SoftLimitBytes)
		r.Metrics["quota_hard_limit_bytes"] = float64(q.HardLimitBytes)
	}
	verb := "removed"
	freed := r.FreedBytes
	if dryRun {
		verb, freed = "would remove", r.PlannedFreeBytes
	}
	r.Summary = fmt.Sprintf("%s %d images and %d layers, %s freed; %d images kept; usage %s",
		verb, countImages(r.Removed), len(r.Removed)-countImages(r.Removed), units.BytesSize(float64(freed)),
		len(r.Kept), units.BytesSize(float64(r.UsageAfterBytes)))
	if dryRun {
		r.Summary = fmt.Sprintf("would remove %d images and %d layers, %s to free; %d images kept",
			countImages(r.Removed), len(r.Removed)-countImages(r.Removed), units.BytesSize(float64(freed)), len(r.Kept))
	}
	if r.LimitBytes > 0 {
		r.Summary += fmt.Sprintf(" (limit %s)", units.BytesSize(float64(r.LimitBytes)))
	}
	return r, nil
}

func countImages(items []Item) int {
	n := 0
	for _, it := range items {
		if !it.Layer {
			n++
		}
	}
	return n
}

// apply removes the plan's items one by one. Each removal is re-checked by
// containers/storage under its locks (a container created meanwhile makes
// DeleteImage fail with ErrImageUsedByContainer: the image is kept, never
// forced); names added meanwhile are re-checked against the protections.
func (j *Job) apply(ctx context.Context, snap *layergraph.Snapshot, plan *Plan, r *Report) {
	// Freed bytes are the snapshot's disk figures of what was really
	// deleted, replayed on a model so that a hard-linked inode counts when
	// its last layer goes.
	freed := layergraph.NewSimulation(snap)
	keep := func(it Item, why Reason, detail string) {
		it.Reason, it.Detail, it.Bytes, it.Cumulative, it.Layers = why, detail, 0, 0, nil
		if !it.Layer {
			r.Kept = append(r.Kept, it)
		}
		if it.Layer {
			j.Log.Info("kept at apply", "layer", it.ID, "reason", why, "detail", detail)
		} else {
			j.Log.Info("kept at apply", "image", it.ID, "reference", first(it.Names), "reason", why, "detail", detail)
		}
	}
	// Pins are re-read once here: one may have been added since the plan.
	ps, pinErr := pins.List(j.State)
	pinSet := pins.NewSet(ps)
	var removedIDs []string
	for i, it := range plan.Removals {
		if ctx.Err() != nil {
			r.Errors = append(r.Errors, fmt.Sprintf("stopped before %s: %v", it.ID, ctx.Err()))
			break
		}
		j.progress(i, len(plan.Removals), r.FreedBytes)
		if it.Layer {
			err := j.Store.DeleteLayer(it.ID)
			switch {
			case err == nil:
				it.Bytes = freed.Apply("", []string{it.ID})
				r.FreedBytes += it.Bytes
				it.Cumulative = r.FreedBytes
				r.Removed = append(r.Removed, it)
				j.Log.Info("removed layer", "layer", it.ID, "reason", it.Reason, "bytes", it.Bytes)
				r.Events = append(r.Events, report.Event{Kind: report.EventLayerRemoved, Severity: report.SeverityLow,
					Message: fmt.Sprintf("removed orphan layer %.12s (%s)", it.ID, units.BytesSize(float64(it.Bytes))), Bytes: it.Bytes})
			case errors.Is(err, storage.ErrLayerUnknown):
				keep(it, KeptGone, "already removed")
			case errors.Is(err, storage.ErrLayerHasChildren), errors.Is(err, storage.ErrLayerUsedByImage), errors.Is(err, storage.ErrLayerUsedByContainer):
				keep(it, KeptInUse, err.Error())
			default:
				r.Errors = append(r.Errors, fmt.Sprintf("layer %s: %v", it.ID, err))
			}
			continue
		}
		// Names may have changed since the snapshot (a new tag, a pin):
		// re-check what protects an image by name.
		cur, err := j.Store.Image(it.ID)
		if err != nil {
			if errors.Is(err, storage.ErrImageUnknown) {
				keep(it, KeptGone, "already removed")
			} else {
				r.Errors = append(r.Errors, fmt.Sprintf("image %s: %v", it.ID, err))
			}
			continue
		}
		if why, detail := j.recheckNames(it, cur.Names, pinSet, pinErr); why != "" {
			it.Names = cur.Names
			keep(it, why, detail)
			continue
		}
		layers, err := j.Store.DeleteImage(it.ID, true)
		switch {
		case err == nil:
			b := freed.Apply(it.ID, layers)
			it.Bytes, it.Layers = b, layers
			r.FreedBytes += b
			it.Cumulative = r.FreedBytes
			r.Removed = append(r.Removed, it)
			removedIDs = append(removedIDs, it.ID)
			j.Log.Info("removed image", "image", it.ID, "reference", first(it.Names), "reason", it.Reason, "bytes", b)
			r.Events = append(r.Events, report.Event{Kind: report.EventImageRemoved, Severity: report.SeverityLow,
				Message: fmt.Sprintf("removed image %.12s %v (%s, %s)", it.ID, it.Names, it.Reason, units.BytesSize(float64(b))),
				Image:   it.ID, Reference: first(it.Names), Bytes: b})
		case errors.Is(err, storage.ErrImageUsedByContainer):
			keep(it, KeptInUse, "at apply: "+err.Error())
		case errors.Is(err, storage.ErrNotAnImage), errors.Is(err, storage.ErrImageUnknown):
			keep(it, KeptGone, "already removed")
		default:
			r.Errors = append(r.Errors, fmt.Sprintf("image %s: %v", it.ID, err))
		}
	}
	j.progressDone(len(plan.Removals), r.FreedBytes)
	if err := lastuse.Forget(j.State, removedIDs); err != nil {
		j.Log.Warn("forgetting removed images' last use", "error", err)
	}
}

// recheckNames applies the name-based protections to an image's current
// names (pins and keep globs; Quadlet units were read moments ago).
func (j *Job) recheckNames(it Item, names []string, pinSet *pins.Set, pinErr error) (Reason, string) {
	if pinErr != nil {
		return KeptPinned, "pins unreadable: " + pinErr.Error()
	}
	if m := pinSet.Match(it.ID, names); m != "" {
		return KeptPinned, m
	}
	for _, g := range j.Policy.Keep {
		for _, n := range names {
			if imageref.MatchGlob(g, n) {
				return KeptKeep, g
			}
		}
	}
	if it.Reason == ReasonDangling && len(names) > 0 {
		return KeptNotNeeded, "tagged since the plan"
	}
	return "", ""
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func (j *Job) progress(i, n int, freed int64) {
	if j.Progress == nil {
		return
	}
	fmt.Fprintf(j.Progress, "\rprune: %d/%d removed, %s freed ", i, n, units.BytesSize(float64(freed)))
}

func (j *Job) progressDone(n int, freed int64) {
	if j.Progress == nil || n == 0 {
		return
	}
	fmt.Fprintf(j.Progress, "\rprune: %d/%d removed, %s freed \n", n, n, units.BytesSize(float64(freed)))
}
