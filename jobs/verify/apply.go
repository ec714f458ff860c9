package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/shared/report"
)

// Store is the part of storage.Store the executor uses.
type Store interface {
	Image(id string) (*storage.Image, error)
	Containers() ([]storage.Container, error)
	RemoveNames(id string, names []string) error
	DeleteImage(id string, commit bool) ([]string, error)
}

var _ Store = (storage.Store)(nil)

// Apply carries out the planned actions, re-checking each against the store
// as it is now: an image that gained a name or a container since the plan
// is not removed. It returns the actions with their outcome and the events.
func Apply(ctx context.Context, st Store, actions []Action, log *slog.Logger) ([]Action, []report.Event) {
	var events []report.Event
	out := make([]Action, len(actions))
	for i, a := range actions {
		if a.Skipped || a.Kind == ActionNone {
			out[i] = a
			continue
		}
		if err := ctx.Err(); err != nil {
			a.Skipped, a.Reason = true, fmt.Sprintf("not applied: %v", err)
			out[i] = a
			continue
		}
		var evs []report.Event
		switch a.Kind {
		case ActionUntag:
			a, evs = untag(st, a)
		case ActionRemove:
			a, evs = remove(st, a)
		}
		if a.Skipped {
			log.Warn("verify action skipped", "action", a.Kind, "image", a.ImageID, "reason", a.Reason)
		} else {
			log.Info("verify action applied", "action", a.Kind, "image", a.ImageID, "names", a.Names)
		}
		events = append(events, evs...)
		out[i] = a
	}
	return out, events
}

func untag(st Store, a Action) (Action, []report.Event) {
	img, err := st.Image(a.ImageID)
	if err != nil {
		a.Skipped, a.Reason = true, fmt.Sprintf("image gone: %v", err)
		return a, nil
	}
	var names []string
	for _, n := range a.Names {
		if slices.Contains(img.Names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		a.Skipped, a.Reason = true, "names already gone"
		return a, nil
	}
	if err := st.RemoveNames(a.ImageID, names); err != nil {
		a.Skipped, a.Reason = true, fmt.Sprintf("removing names: %v", err)
		return a, nil
	}
	a.Names, a.Applied = names, true
	var evs []report.Event
	for _, n := range names {
		evs = append(evs, report.Event{
			Kind:      report.EventImageUntagged,
			Severity:  report.SeverityNormal,
			Message:   fmt.Sprintf("untagged %s (image %s): it fails the trust policy", n, short(a.ImageID)),
			Topic:     "verify:" + n,
			Image:     a.ImageID,
			Reference: n,
		})
	}
	return a, evs
}

func remove(st Store, a Action) (Action, []report.Event) {
	img, err := st.Image(a.ImageID)
	if err != nil {
		a.Skipped, a.Reason = true, fmt.Sprintf("image gone: %v", err)
		return a, nil
	}
	// Re-check under the current state: a new name was never verified.
	for _, n := range img.Names {
		if !slices.Contains(a.Names, n) {
			a.Skipped, a.Reason = true, fmt.Sprintf("not removed: image gained name %s since it was verified", n)
			return a, nil
		}
	}
	cs, err := st.Containers()
	if err != nil {
		a.Skipped, a.Reason = true, fmt.Sprintf("not removed: listing containers: %v", err)
		return a, nil
	}
	var users []string
	for _, c := range cs {
		if c.ImageID == a.ImageID {
			users = append(users, c.ID)
		}
	}
	if len(users) > 0 {
		return removeRefused(st, a, fmt.Sprintf("in use by container(s) %s", strings.Join(shortAll(users), ", ")))
	}
	// DeleteImage re-checks for containers under the store's locks.
	if _, err := st.DeleteImage(a.ImageID, true); err != nil {
		if errors.Is(err, storage.ErrImageUsedByContainer) {
			return removeRefused(st, a, "in use by a container")
		}
		a.Skipped, a.Reason = true, fmt.Sprintf("not removed: %v", err)
		return a, nil
	}
	a.Applied = true
	return a, []report.Event{{
		Kind:      report.EventImageRemoved,
		Severity:  report.SeverityNormal,
		Message:   fmt.Sprintf("removed image %s (%s): no name passes the trust policy", short(a.ImageID), strings.Join(a.Names, ", ")),
		Topic:     "verify-image:" + a.ImageID,
		Image:     a.ImageID,
		Reference: first(a.Names),
	}}
}

// removeRefused handles a removal found unsafe at apply time: untag mode
// falls back to removing the names, remove mode skips.
func removeRefused(st Store, a Action, why string) (Action, []report.Event) {
	if a.UntagInstead {
		a.Kind, a.Reason = ActionUntag, "image kept: "+why
		return untag(st, a)
	}
	a.Skipped, a.Reason = true, "not removed: "+why
	return a, nil
}
