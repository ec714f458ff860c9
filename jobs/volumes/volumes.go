package volumes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/go-units"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/jobs/shared/report"
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

const (
	// deleteWorkers bounds the DELETEs in flight at once. Podman removes
	// volumes under its own locks; a few requests in flight hide the HTTP
	// round trips between them.
	deleteWorkers = 4
	// relistAfter bounds how old the dangling listing each volume is checked
	// against may be when its DELETE is sent.
	relistAfter = 500 * time.Millisecond
)

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
	// Clock tells the time (nil: clock.Real).
	Clock  clock.Clock
	Logger *slog.Logger
}

func (o Options) now() time.Time {
	if o.Clock != nil {
		return o.Clock.Now()
	}
	return clock.Real.Now()
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// TakeSnapshot asks podman for its volumes, the dangling ones and their
// sizes. The three reads are independent and sent at once.
func TakeSnapshot(ctx context.Context, api API) (Snapshot, error) {
	var (
		all, dangling []podmanapi.Volume
		df            podmanapi.SystemDF
		errs          [3]error
		listedAt      time.Time // when the dangling listing was asked for
		wg            sync.WaitGroup
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if all, errs[0] = api.Volumes(ctx, nil); errs[0] != nil {
			errs[0] = fmt.Errorf("listing volumes: %w", errs[0])
		}
	}()
	go func() {
		defer wg.Done()
		listedAt = time.Now()
		if dangling, errs[1] = api.Volumes(ctx, map[string][]string{"dangling": {"true"}}); errs[1] != nil {
			errs[1] = fmt.Errorf("listing dangling volumes: %w", errs[1])
		}
	}()
	go func() {
		defer wg.Done()
		if df, errs[2] = api.SystemDF(ctx); errs[2] != nil {
			errs[2] = fmt.Errorf("reading volume sizes (system df): %w", errs[2])
		}
	}()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return Snapshot{}, err
		}
	}
	s := Snapshot{Volumes: all, Dangling: map[string]bool{}, Usage: map[string]podmanapi.VolumeUsage{}}
	s.listing = newListing(dangling, listedAt)
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
	t0 := time.Now()
	snap, err := TakeSnapshot(ctx, api)
	if err != nil {
		return finish(err)
	}
	o.logger().Debug("volume snapshot", "volumes", len(snap.Volumes), "dangling", len(snap.Dangling), "took", time.Since(t0))
	pl := MakePlan(snap, p, o.now())
	r.Kept = append(r.Kept, pl.Keep...)
	if o.DryRun {
		r.Removed = append(r.Removed, pl.Remove...)
		return finish(nil)
	}
	t0 = time.Now()
	// The snapshot's dangling listing was answered a moment ago: the
	// executor checks against it (and re-lists once it is relistAfter old).
	err = applyListed(ctx, api, p, pl.Remove, r, o, snap.listing)
	o.logger().Debug("volumes applied", "planned", len(pl.Remove), "removed", len(r.Removed), "took", time.Since(t0))
	return finish(err)
}

// apply removes the planned volumes. Right before the deletions it lists the
// dangling volumes once more (one request instead of one inspection per
// volume, refreshed when older than relistAfter) and re-applies the rules to
// each volume as podman describes it then: a volume no longer listed is gone
// or used, one with another creation time was recreated, one that no longer
// qualifies (relabelled...) is kept. A named volume is also inspected right
// before its DELETE (its name can be reused at any moment; anonymous ones
// have random IDs). The DELETE is without force, so podman itself refuses a
// volume a container took in the meantime (409), a skip.
// Up to deleteWorkers DELETEs are in flight at once; the report lists the
// volumes in plan order whatever order they finished in.
func apply(ctx context.Context, api API, p policy.Volumes, items []Item, r *Report, o Options) error {
	return applyListed(ctx, api, p, items, r, o, listing{})
}

// listing is podman's answer to "which volumes are dangling" and when it was
// asked for (the state it describes is at least that recent).
type listing struct {
	vols map[string]podmanapi.Volume // nil: none yet
	at   time.Time
}

func newListing(vs []podmanapi.Volume, at time.Time) listing {
	l := listing{vols: make(map[string]podmanapi.Volume, len(vs)), at: at}
	for _, v := range vs {
		l.vols[v.Name] = v
	}
	return l
}

// applyListed is apply starting from a dangling listing already at hand; it
// is used only while younger than relistAfter.
func applyListed(ctx context.Context, api API, p policy.Volumes, items []Item, r *Report, o Options, l listing) error {
	log := o.logger()
	results := make([]outcome, len(items))
	var runErr error
	sem := make(chan struct{}, deleteWorkers)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards runErr, set by workers
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return runErr != nil }
	fail := func(err error) {
		mu.Lock()
		if runErr == nil {
			runErr = err
		}
		mu.Unlock()
	}
	// check decides, against a listing at most relistAfter old, whether item
	// i still qualifies; false with results[i] set means kept, false without
	// means the run failed.
	check := func(i int, it Item) bool {
		if l.vols == nil || time.Since(l.at) > relistAfter {
			t0 := time.Now()
			vs, err := api.Volumes(ctx, map[string][]string{"dangling": {"true"}})
			if err != nil {
				fail(fmt.Errorf("re-listing dangling volumes: %w", err))
				return false
			}
			log.Debug("re-listed dangling volumes", "count", len(vs), "took", time.Since(t0))
			l = newListing(vs, t0)
		}
		v, listed := l.vols[it.Name]
		if !listed {
			// Not dangling any more: gone, or a container references it.
			_, err := api.InspectVolume(ctx, it.Name)
			switch {
			case errors.Is(err, podmanapi.ErrNotFound):
				results[i] = outcome{done: true, item: with(it, ReasonGone, "removed by someone else before stowage")}
			case err != nil:
				fail(fmt.Errorf("inspecting volume %s: %w", it.Name, err))
			default:
				results[i] = outcome{done: true, item: with(it, ReasonBecameUsed, "a container uses it now")}
			}
			return false
		}
		if !v.CreatedAt.Equal(it.Created) {
			results[i] = outcome{done: true, item: with(it, ReasonChanged, "recreated since planning")}
			return false
		}
		if reason, detail, ok := Decide(v, true, 0, p, o.now()); !ok {
			results[i] = outcome{done: true, item: with(it, ReasonChanged, reason+": "+detail)}
			return false
		}
		return true
	}
	for i, it := range items {
		if err := ctx.Err(); err != nil {
			fail(fmt.Errorf("removing volumes: %w", err))
		}
		// A worker slot first, so the check is as fresh as the DELETE.
		sem <- struct{}{}
		if failed() || !check(i, it) {
			<-sem
			if failed() {
				break
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if !it.Anonymous {
				// A named volume can be removed and recreated under the same
				// name by anyone at any moment: inspect it right before its
				// DELETE too. (Anonymous names are random 64-hex IDs.)
				res, err := recheck(ctx, api, p, it, o)
				if err != nil {
					fail(err)
					return
				}
				if res.done {
					results[i] = res
					return
				}
			}
			t0 := time.Now()
			err := api.RemoveVolume(ctx, it.Name)
			log.Debug("DELETE volume", "volume", it.Name, "took", time.Since(t0), "error", err)
			switch {
			case err == nil:
				log.Info("removed volume", "volume", it.Name, "bytes", it.Bytes, "reason", it.Reason)
				results[i] = outcome{done: true, removed: true, item: it}
			case errors.Is(err, podmanapi.ErrVolumeInUse):
				log.Info("volume became used, kept", "volume", it.Name)
				results[i] = outcome{done: true, item: with(it, ReasonBecameUsed, "podman refused: a container uses it now")}
			case errors.Is(err, podmanapi.ErrNotFound):
				results[i] = outcome{done: true, item: with(it, ReasonGone, "removed by someone else before stowage")}
			default:
				fail(fmt.Errorf("removing volume %s: %w", it.Name, err))
			}
		}()
	}
	wg.Wait()
	for i, res := range results {
		it := res.item
		switch {
		case !res.done:
			r.Kept = append(r.Kept, with(items[i], ReasonNotRun, "run stopped before this volume"))
		case res.removed:
			r.Removed = append(r.Removed, it)
			r.Events = append(r.Events, report.Event{
				Kind:     report.EventVolumeRemoved,
				Severity: report.SeverityLow,
				Message:  fmt.Sprintf("Removed unused volume %s (%s)", short(it.Name), units.BytesSize(float64(it.Bytes))),
				Topic:    "volumes",
				Volume:   it.Name,
				Bytes:    it.Bytes,
			})
		default:
			r.Kept = append(r.Kept, it)
		}
	}
	return runErr
}

// recheck inspects one volume right before its deletion and re-applies the
// rules; a done outcome means it is kept (gone, recreated, no longer
// qualifying).
func recheck(ctx context.Context, api API, p policy.Volumes, it Item, o Options) (outcome, error) {
	cur, err := api.InspectVolume(ctx, it.Name)
	if errors.Is(err, podmanapi.ErrNotFound) {
		return outcome{done: true, item: with(it, ReasonGone, "removed by someone else before stowage")}, nil
	}
	if err != nil {
		return outcome{}, fmt.Errorf("inspecting volume %s: %w", it.Name, err)
	}
	if !cur.CreatedAt.Equal(it.Created) {
		return outcome{done: true, item: with(it, ReasonChanged, "recreated since planning")}, nil
	}
	if reason, detail, ok := Decide(cur, true, 0, p, o.now()); !ok {
		return outcome{done: true, item: with(it, ReasonChanged, reason+": "+detail)}, nil
	}
	return outcome{}, nil
}

// outcome is what became of one planned volume in apply.
type outcome struct {
	done    bool // false: not reached (the run stopped first)
	removed bool
	item    Item // with the keep reason when kept
}

func with(it Item, reason, detail string) Item {
	it.Reason, it.Detail = reason, detail
	return it
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
