package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/docker/go-units"

	"github.com/stowage/stowage/jobs/podmanapi"
	"github.com/stowage/stowage/jobs/report"
	"github.com/stowage/stowage/policy"
)

// API is what the job needs from podman; *podmanapi.Client implements it.
type API interface {
	Ping(ctx context.Context) (string, error)
	Volumes(ctx context.Context, filters map[string][]string) ([]podmanapi.Volume, error)
	InspectVolume(ctx context.Context, name string) (podmanapi.Volume, error)
	RemoveVolume(ctx context.Context, name string) error
	SystemDF(ctx context.Context) (podmanapi.SystemDF, error)
}

var _ API = (*podmanapi.Client)(nil)

// Report is the `volumes` job's result (`stowage run volumes --format json`).
type Report struct {
	report.Common
	PodmanVersion string `json:"podman_version"`
	// PodmanSocket is the API socket used; PodmanStarted is true when
	// stowage started a private podman service for the run (set by callers
	// that connect, e.g. the CLI).
	PodmanSocket  string `json:"podman_socket,omitempty"`
	PodmanStarted bool   `json:"podman_started,omitempty"`
	// Removed are the volumes deleted (with --dry-run: that would be).
	Removed []Item `json:"removed"`
	// Kept are all other volumes, each with the reason it stays.
	Kept       []Item `json:"kept"`
	FreedBytes int64  `json:"freed_bytes"`
}

// Options tune one run.
type Options struct {
	DryRun bool
	// Now returns the current time (tests pass a fixed clock).
	Now    func() time.Time
	Logger *slog.Logger
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// TakeSnapshot asks podman for its volumes, the dangling ones and their sizes.
func TakeSnapshot(ctx context.Context, api API) (Snapshot, error) {
	all, err := api.Volumes(ctx, nil)
	if err != nil {
		return Snapshot{}, fmt.Errorf("listing volumes: %w", err)
	}
	dangling, err := api.Volumes(ctx, map[string][]string{"dangling": {"true"}})
	if err != nil {
		return Snapshot{}, fmt.Errorf("listing dangling volumes: %w", err)
	}
	df, err := api.SystemDF(ctx)
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading volume sizes (system df): %w", err)
	}
	s := Snapshot{Volumes: all, Dangling: map[string]bool{}, Usage: map[string]podmanapi.VolumeUsage{}}
	for _, v := range dangling {
		s.Dangling[v.Name] = true
	}
	for _, u := range df.Volumes {
		s.Usage[u.VolumeName] = u
	}
	return s, nil
}

// Run is one run of the job: snapshot, plan, then (unless DryRun) apply.
// Any error talking to podman before removal starts fails the run with
// nothing removed; an error during removal stops it, and the report (also
// returned with the error) says what was removed until then.
func Run(ctx context.Context, api API, p policy.Volumes, o Options) (*Report, error) {
	r := &Report{Common: report.Common{Job: report.JobVolumes, DryRun: o.DryRun, Started: o.now(), Events: []report.Event{}}}
	r.Removed, r.Kept = []Item{}, []Item{}
	finish := func(err error) (*Report, error) {
		r.Finished = o.now()
		r.FreedBytes = Bytes(r.Removed)
		r.Metrics = map[string]float64{
			"removed":     float64(len(r.Removed)),
			"freed_bytes": float64(r.FreedBytes),
			"kept":        float64(len(r.Kept)),
		}
		r.Summary = summary(r, err)
		return r, err
	}
	v, err := api.Ping(ctx)
	if err != nil {
		return finish(err)
	}
	r.PodmanVersion = v
	snap, err := TakeSnapshot(ctx, api)
	if err != nil {
		return finish(err)
	}
	pl := MakePlan(snap, p, o.now())
	r.Kept = append(r.Kept, pl.Keep...)
	if o.DryRun {
		r.Removed = append(r.Removed, pl.Remove...)
		return finish(nil)
	}
	return finish(apply(ctx, api, p, pl.Remove, r, o))
}

// apply removes the planned volumes one by one. Before each it re-reads the
// volume and re-applies the rules (it may have been recreated or relabelled);
// the DELETE is without force, so podman refuses a volume a container took
// in the meantime (409), which is a skip.
func apply(ctx context.Context, api API, p policy.Volumes, items []Item, r *Report, o Options) error {
	log := o.logger()
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			notRun(r, items[i:])
			return fmt.Errorf("removing volumes: %w", err)
		}
		cur, err := api.InspectVolume(ctx, it.Name)
		if errors.Is(err, podmanapi.ErrNotFound) {
			r.Kept = append(r.Kept, with(it, ReasonGone, "removed by someone else before stowage"))
			continue
		}
		if err != nil {
			notRun(r, items[i:])
			return fmt.Errorf("inspecting volume %s: %w", it.Name, err)
		}
		// Dangling and links were true a moment ago; the DELETE re-checks use.
		if !cur.CreatedAt.Equal(it.Created) {
			r.Kept = append(r.Kept, with(it, ReasonChanged, "recreated since planning"))
			continue
		}
		if reason, detail, ok := Decide(cur, true, 0, p, o.now()); !ok {
			r.Kept = append(r.Kept, with(it, ReasonChanged, reason+": "+detail))
			continue
		}
		err = api.RemoveVolume(ctx, it.Name)
		switch {
		case err == nil:
			log.Info("removed volume", "volume", it.Name, "bytes", it.Bytes, "reason", it.Reason)
			r.Removed = append(r.Removed, it)
			r.Events = append(r.Events, report.Event{
				Kind:     report.EventVolumeRemoved,
				Severity: report.SeverityLow,
				Message:  fmt.Sprintf("Removed unused volume %s (%s)", short(it.Name), units.BytesSize(float64(it.Bytes))),
				Topic:    "volumes",
				Volume:   it.Name,
				Bytes:    it.Bytes,
			})
		case errors.Is(err, podmanapi.ErrVolumeInUse):
			log.Info("volume became used, kept", "volume", it.Name)
			r.Kept = append(r.Kept, with(it, ReasonBecameUsed, "podman refused: a container uses it now"))
		case errors.Is(err, podmanapi.ErrNotFound):
			r.Kept = append(r.Kept, with(it, ReasonGone, "removed by someone else before stowage"))
		default:
			notRun(r, items[i:])
			return fmt.Errorf("removing volume %s: %w", it.Name, err)
		}
	}
	return nil
}

func with(it Item, reason, detail string) Item {
	it.Reason, it.Detail = reason, detail
	return it
}

func notRun(r *Report, items []Item) {
	for _, it := range items {
		r.Kept = append(r.Kept, with(it, ReasonNotRun, "run stopped before this volume"))
	}
}

// short abbreviates the 64-hex names of anonymous volumes for messages.
func short(name string) string {
	if len(name) == 64 {
		return name[:12]
	}
	return name
}

func summary(r *Report, err error) string {
	verb := "removed"
	if r.DryRun {
		verb = "would remove"
	}
	s := fmt.Sprintf("volumes: %s %d unused volume(s), %s; kept %d", verb, len(r.Removed), units.BytesSize(float64(r.FreedBytes)), len(r.Kept))
	if err != nil {
		s += "; failed: " + err.Error()
	}
	return s
}

// DFSection is the `volumes` section of `stowage df`.
type DFSection struct {
	Count         int   `json:"count"`
	DanglingCount int   `json:"dangling_count"`
	Bytes         int64 `json:"bytes"`
	// ReclaimableBytes is what the volumes job would free now under the
	// policy (not every dangling volume: kept ones are excluded).
	ReclaimableBytes int64 `json:"reclaimable_bytes"`
}

// Usage computes the df section from podman's API at now.
func Usage(ctx context.Context, api API, p policy.Volumes, now time.Time) (DFSection, error) {
	s, err := TakeSnapshot(ctx, api)
	if err != nil {
		return DFSection{}, err
	}
	d := DFSection{Count: len(s.Volumes), DanglingCount: len(s.Dangling)}
	for _, v := range s.Volumes {
		d.Bytes += s.Usage[v.Name].Size
	}
	d.ReclaimableBytes = Bytes(MakePlan(s, p, now).Remove)
	return d, nil
}
