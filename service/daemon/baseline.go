package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/service/scheduler"
)

// baselineBucket holds, per job, the schedule the daemon last saw and when
// it first saw it: the catch-up baseline of a job that has never run.
const baselineBucket = "schedule-baseline"

// seen is one job's entry in baselineBucket.
type seen struct {
	Spec  string    `json:"spec"`
	Since time.Time `json:"since"`
}

// planBaselines returns the entries to keep for the scheduled jobs of cfg:
// an unchanged schedule keeps its Since; a changed one starts at now (a new
// schedule never triggers an immediate run); a job seen for the first time
// starts at its last run (lastRun, so a state from before baselines existed
// still catches up) or, if it never ran, at now; an unscheduled job has no
// entry. changed says whether stored must be rewritten. Pure.
func planBaselines(stored map[string]seen, jobs []scheduler.Job, lastRun map[string]time.Time, now time.Time) (next map[string]seen, changed bool) {
	next = map[string]seen{}
	for _, j := range jobs {
		if j.Schedule == nil {
			continue
		}
		s, ok := stored[j.Name]
		switch {
		case ok && s.Spec == j.Spec && !s.Since.IsZero() && !s.Since.After(now):
			next[j.Name] = s
		case !ok && !lastRun[j.Name].IsZero() && !lastRun[j.Name].After(now):
			next[j.Name] = seen{Spec: j.Spec, Since: lastRun[j.Name]}
		default:
			next[j.Name] = seen{Spec: j.Spec, Since: now}
		}
	}
	if len(next) != len(stored) {
		return next, true
	}
	for k, v := range next {
		if s, ok := stored[k]; !ok || s.Spec != v.Spec || !s.Since.Equal(v.Since) {
			return next, true
		}
	}
	return next, false
}

// syncBaselines brings the persisted baselines in line with cfg and returns
// each scheduled job's Since. Without a state database (or when it fails:
// the error is logged) the baseline is the daemon's own start, which still
// catches up a slot missed within this daemon's life time.
func (d *Daemon) syncBaselines(cfg scheduler.Config) map[string]time.Time {
	now := d.now()
	d.checkState()
	stored := map[string]seen{}
	if d.opts.State != nil {
		err := d.opts.State.View(baselineBucket, func(b *bolt.Bucket) error {
			if b == nil {
				return nil
			}
			return b.ForEach(func(k, _ []byte) error {
				var s seen
				if err := state.GetJSON(b, string(k), &s); err != nil {
					d.log.Warn("ignoring a broken schedule baseline", "job", string(k), "err", err)
					return nil
				}
				stored[string(k)] = s
				return nil
			})
		})
		if err != nil {
			d.log.Warn("reading schedule baselines", "err", err)
		}
	}
	lastRun := map[string]time.Time{}
	d.mu.Lock()
	for job, r := range d.last {
		lastRun[job] = r.Started
	}
	d.mu.Unlock()
	next, changed := planBaselines(stored, cfg.Jobs, lastRun, now)
	if changed && d.opts.State != nil {
		err := d.opts.State.Update(baselineBucket, func(b *bolt.Bucket) error {
			for k := range stored {
				if _, ok := next[k]; !ok {
					if err := b.Delete([]byte(k)); err != nil {
						return err
					}
				}
			}
			for k, v := range next {
				if err := state.PutJSON(b, k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			d.log.Warn("recording schedule baselines", "err", err)
		}
	}
	since := make(map[string]time.Time, len(next))
	for k, v := range next {
		since[k] = v.Since
	}
	return since
}

// checkState records whether the state database is usable, for status. A
// damaged database does not stop the daemon: it keeps serving status and
// running the jobs that do not need the state; the others fail with the
// error, which names the file and the way out.
func (d *Daemon) checkState() {
	if d.opts.State == nil {
		return
	}
	msg := ""
	if err := d.opts.State.Check(); err != nil {
		msg = err.Error()
		d.log.Error("state database unusable", "err", err)
	}
	d.mu.Lock()
	d.stateErr = msg
	d.mu.Unlock()
}

// ErrAnotherDaemon is returned by Run when another daemon uses the same
// state directory.
var ErrAnotherDaemon = errors.New("another stowage daemon uses this state directory")

// lockState takes the daemon lock of the state directory (an flock on
// daemon.lock, released when the process ends): two daemons sharing one
// state would schedule every job twice. Workers do not inherit the lock.
func (d *Daemon) lockState() (func(), error) {
	if d.opts.State == nil {
		return func() {}, nil
	}
	path := filepath.Join(filepath.Dir(d.opts.State.Path()), "daemon.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked", ErrAnotherDaemon, path)
		}
		return nil, fmt.Errorf("daemon lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
