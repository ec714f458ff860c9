package daemon

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/service/scheduler"
)

// actionBusyRetry is how often an action retries a job that is still running.
const actionBusyRetry = 250 * time.Millisecond

// notifyActor carries out the actions of the user daemon's notifications
// in-process: the same runs a D-Bus or control-socket client would start.
type notifyActor struct{ d *Daemon }

var _ notify.Actor = notifyActor{}

// Prune is RunJob("prune", dryRun=false).
func (a notifyActor) Prune(ctx context.Context) (string, error) {
	return whenFree(ctx, func() (*api.Run, error) { return a.d.Trigger(report.JobPrune, false) })
}

// Pull is a refresh run of ref alone in pull mode (refresh --pull REF).
func (a notifyActor) Pull(ctx context.Context, ref string) (string, error) {
	return whenFree(ctx, func() (*api.Run, error) { return a.d.Pull(ref) })
}

// whenFree starts a run, waiting while the job is busy: the notification
// is sent as the run that found it ends, so a quick click can arrive
// before that run is over; so can a scheduled run of the job.
func whenFree(ctx context.Context, start func() (*api.Run, error)) (string, error) {
	for {
		r, err := start()
		if err == nil {
			return r.ID, nil
		}
		if !errors.Is(err, scheduler.ErrBusy) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", err
		case <-time.After(actionBusyRetry):
		}
	}
}

// Report is the stored run as `stowage report RUN` prints it.
func (a notifyActor) Report(_ context.Context, runID string) (string, error) {
	r, err := a.d.GetRun(runID)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		return "", err
	}
	return b.String(), nil
}
