package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
)

// Actor carries out a notification's actions for the process that shows it.
type Actor interface {
	// Prune starts a prune run now (not a dry run); returns its run ID.
	Prune(ctx context.Context) (runID string, err error)
	// Pull pulls ref now (refresh of that one reference, pull mode); returns the run ID.
	Pull(ctx context.Context, ref string) (runID string, err error)
	// Report returns the run's report rendered as text (what `stowage report RUN` prints).
	Report(ctx context.Context, runID string) (string, error)
}

// Action keys offered in the actions array of Notify (key, then label).
const (
	ActionPrune  = "prune"  // "Free N now": a prune run
	ActionPull   = "pull"   // "Pull update": refresh one reference in pull mode
	ActionReport = "report" // "Show report": the run's report as a text file
	ActionSnooze = "snooze" // "Don't remind me": no more findings about one reference
)

// Signals and capability of the notification service.
const (
	serviceInterface   = "org.freedesktop.Notifications"
	capabilityActions  = "actions"
	capabilityMarkup   = "body-markup"
	signalAction       = "ActionInvoked"
	signalClosed       = "NotificationClosed"
	methodCapabilities = serviceInterface + ".GetCapabilities"
)

// DefaultHold bounds how long a notification with actions counts as open
// when the server never says it closed (Options.Hold).
const DefaultHold = time.Hour

// actionTimeout bounds one action's work (starting a run, writing a report).
const actionTimeout = time.Minute

// ErrNotSnoozed is returned by Unsnooze for a reference that is not snoozed.
var ErrNotSnoozed = errors.New("notify: not snoozed")

// action is one entry of a notification's actions array.
type action struct{ Key, Label string }

// planActions picks the actions of a run's notification from its new
// findings (fresh) and all of the run's events. Pure.
//   - report: always (every notification is about a run).
//   - prune "Free N now": a fresh quota_exceeded finding that the run itself
//     did not resolve: N is its bytes to free (the prune planner's figure; the
//     body carries its message) less what the run's image_removed and
//     layer_removed events freed. A prune run that freed what was needed
//     offers none; one that could not (an image in use, a removal that
//     failed) offers another try.
//   - pull and snooze: only when every fresh finding is about one reference;
//     pull when one of them is a drift or newer version the run did not pull
//     itself (no image_pulled event for it, i.e. notify mode or a failed pull).
//
// It returns the reference the notification is about ("" for several).
func planActions(fresh, all []report.Event) ([]action, string) {
	var acts []action
	var need int64
	for _, ev := range fresh {
		if ev.Kind == report.EventQuotaExceeded && ev.Bytes > 0 {
			need = max(need, ev.Bytes)
		}
	}
	for _, ev := range all {
		if ev.Kind == report.EventImageRemoved || ev.Kind == report.EventLayerRemoved {
			need -= ev.Bytes
		}
	}
	if need > 0 {
		acts = append(acts, action{ActionPrune, "Free " + report.HumanSize(need) + " now"})
	}
	ref := fresh[0].Reference
	for _, ev := range fresh[1:] {
		if ev.Reference != ref {
			ref = ""
		}
	}
	if ref != "" {
		pulled := map[string]bool{}
		for _, ev := range all {
			if ev.Kind == report.EventImagePulled {
				pulled[ev.Reference] = true
			}
		}
		for _, ev := range fresh {
			if ev.Kind == report.EventDriftDetected && !pulled[ev.Reference] ||
				ev.Kind == report.EventNewerVersion && ev.Newer != "" && !pulled[ev.Newer] {
				acts = append(acts, action{ActionPull, "Pull update"})
				break
			}
		}
	}
	acts = append(acts, action{ActionReport, "Show report"})
	if ref != "" {
		acts = append(acts, action{ActionSnooze, "Don't remind me"})
	}
	return acts, ref
}

// actionArray is the Notify actions argument: key, label, key, label, ...
func actionArray(acts []action) []string {
	out := make([]string, 0, 2*len(acts))
	for _, a := range acts {
		out = append(out, a.Key, a.Label)
	}
	return out
}

// openNote is what a sent notification with actions is about; kept in
// memory and under "open/<id>" in the state DB, so a restarted process
// still acts on it.
type openNote struct {
	RunID   string   `json:"run_id"`
	Job     string   `json:"job"`
	Ref     string   `json:"ref,omitempty"`
	Actions []string `json:"actions"`
	// Server is the unique bus name of the server that showed it: only
	// its signals count (ids are per server).
	Server string    `json:"server"`
	Until  time.Time `json:"until"`
}

func openKey(id uint32) string { return "open/" + strconv.FormatUint(uint64(id), 10) }

func snoozeKey(ref string) string { return "snooze/" + ref }

// Snoozed is one reference the user asked not to be reminded of.
type Snoozed struct {
	Ref     string    `json:"ref"`
	Created time.Time `json:"created"`
}

// Snooze records that findings about ref are not to be notified any more.
func Snooze(db *state.DB, ref string, now time.Time) error {
	if ref == "" {
		return errors.New("notify: snooze: empty reference")
	}
	err := db.Update(Bucket, func(b *bolt.Bucket) error { return state.PutJSON(b, snoozeKey(ref), now.UTC()) })
	if err != nil {
		return fmt.Errorf("notify: snoozing %s: %w", ref, err)
	}
	return nil
}

// Unsnooze lets findings about ref be notified again; ErrNotSnoozed when
// it was not snoozed.
func Unsnooze(db *state.DB, ref string) error {
	err := db.Update(Bucket, func(b *bolt.Bucket) error {
		if b.Get([]byte(snoozeKey(ref))) == nil {
			return fmt.Errorf("%w: %s", ErrNotSnoozed, ref)
		}
		return b.Delete([]byte(snoozeKey(ref)))
	})
	if err != nil && !errors.Is(err, ErrNotSnoozed) {
		return fmt.Errorf("notify: unsnoozing %s: %w", ref, err)
	}
	return err
}

// ListSnoozed returns the snoozed references, sorted.
func ListSnoozed(db *state.DB) ([]Snoozed, error) {
	var out []Snoozed
	err := db.View(Bucket, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		c := b.Cursor()
		prefix := []byte("snooze/")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			s := Snoozed{Ref: string(k[len(prefix):])}
			if err := state.GetJSON(b, string(k), &s.Created); err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading snoozed references: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// snoozedIn reads the snoozed set from an open bucket (nil: none).
func snoozedIn(b *bolt.Bucket) map[string]bool {
	out := map[string]bool{}
	if b == nil {
		return out
	}
	c := b.Cursor()
	prefix := []byte("snooze/")
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out[string(k[len(prefix):])] = true
	}
	return out
}

// server returns the unique name of the notification server and the
// capabilities it advertises (none when it cannot say).
func (n *Notifier) server(ctx context.Context) (string, []string) {
	var owner string
	if err := n.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, ServiceName).Store(&owner); err != nil {
		return "", nil
	}
	var caps []string
	if err := n.conn.Object(ServiceName, ServicePath).CallWithContext(ctx, methodCapabilities, 0).Store(&caps); err != nil {
		n.log.Debug("notification server capabilities", "error", err)
		return owner, nil
	}
	return owner, caps
}

// remember records (or, with no actions, forgets) what notification id is
// about.
func (n *Notifier) remember(id uint32, note *openNote) error {
	n.openMu.Lock()
	if note == nil {
		delete(n.open, id)
	} else {
		n.open[id] = *note
	}
	n.openMu.Unlock()
	err := n.db.Update(Bucket, func(b *bolt.Bucket) error {
		if note == nil {
			return b.Delete([]byte(openKey(id)))
		}
		return state.PutJSON(b, openKey(id), note)
	})
	if err != nil {
		return fmt.Errorf("notify: recording notification %d: %w", id, err)
	}
	return nil
}

// forget drops notification id if server showed it, returning what it was
// about.
func (n *Notifier) forget(id uint32, server string) (openNote, bool) {
	n.openMu.Lock()
	note, ok := n.open[id]
	if ok && note.Server == server {
		delete(n.open, id)
	}
	n.openMu.Unlock()
	if !ok || note.Server != server {
		return openNote{}, false
	}
	if err := n.db.Update(Bucket, func(b *bolt.Bucket) error { return b.Delete([]byte(openKey(id))) }); err != nil {
		n.log.Warn("forgetting a notification", "id", id, "error", err)
	}
	return note, true
}

// loadOpen reads the notifications a previous process left open and
// deletes the ones past their bound.
func (n *Notifier) loadOpen() error {
	now := n.now()
	return n.db.Update(Bucket, func(b *bolt.Bucket) error {
		c := b.Cursor()
		prefix := []byte("open/")
		var stale [][]byte
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			id, err := strconv.ParseUint(string(k[len(prefix):]), 10, 32)
			var note openNote
			if err != nil || state.GetJSON(b, string(k), &note) != nil || !now.Before(note.Until) {
				stale = append(stale, bytes.Clone(k))
				continue
			}
			n.open[uint32(id)] = note
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// serverGone forgets the notifications the server with unique name server
// showed: it left the bus, so they are gone and no action will come.
func (n *Notifier) serverGone(server string) {
	n.openMu.Lock()
	var ids []uint32
	for id, note := range n.open {
		if note.Server == server {
			ids = append(ids, id)
		}
	}
	n.openMu.Unlock()
	for _, id := range ids {
		n.forget(id, server)
	}
	if len(ids) > 0 {
		n.log.Debug("notification server left the bus", "server", server, "notifications", len(ids))
	}
}

// ActionsOpen reports whether a notification with actions is still open:
// shown, neither closed nor acted on, and within its bound (Options.Hold).
// A process that must not miss ActionInvoked stays up meanwhile.
func (n *Notifier) ActionsOpen() bool {
	now := n.now()
	n.openMu.Lock()
	defer n.openMu.Unlock()
	for id, note := range n.open {
		if now.Before(note.Until) {
			return true
		}
		delete(n.open, id) // the DB entry goes at the next start
	}
	return false
}

// listen subscribes to the server's ActionInvoked and NotificationClosed.
func (n *Notifier) listen() error {
	for _, member := range []string{signalAction, signalClosed} {
		if err := n.conn.AddMatchSignal(dbus.WithMatchSender(ServiceName), dbus.WithMatchObjectPath(ServicePath),
			dbus.WithMatchInterface(serviceInterface), dbus.WithMatchMember(member)); err != nil {
			return fmt.Errorf("notify: subscribing to %s: %w", member, err)
		}
	}
	// A server that goes away closes its notifications without a word.
	if err := n.conn.AddMatchSignal(dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, ServiceName)); err != nil {
		return fmt.Errorf("notify: watching %s: %w", ServiceName, err)
	}
	ch := make(chan *dbus.Signal, 16)
	n.conn.Signal(ch)
	n.sigs = ch
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.ctx.Done():
				return
			case s, ok := <-ch:
				if !ok {
					return
				}
				n.signal(s)
			}
		}
	}()
	return nil
}

// signal handles one signal from the bus.
func (n *Notifier) signal(s *dbus.Signal) {
	if s.Name == "org.freedesktop.DBus.NameOwnerChanged" {
		if len(s.Body) == 3 && s.Body[0] == ServiceName && s.Sender == "org.freedesktop.DBus" {
			if old, ok := s.Body[1].(string); ok && old != "" {
				n.serverGone(old)
			}
		}
		return
	}
	if s.Path != ServicePath {
		return
	}
	switch s.Name {
	case serviceInterface + "." + signalClosed:
		if len(s.Body) >= 1 {
			if id, ok := s.Body[0].(uint32); ok {
				if _, known := n.forget(id, s.Sender); known {
					n.log.Debug("notification closed", "id", id)
				}
			}
		}
	case serviceInterface + "." + signalAction:
		if len(s.Body) < 2 {
			return
		}
		id, ok1 := s.Body[0].(uint32)
		key, ok2 := s.Body[1].(string)
		if !ok1 || !ok2 {
			return
		}
		n.openMu.Lock()
		note, known := n.open[id]
		n.openMu.Unlock()
		if !known || note.Server != s.Sender || !slices.Contains(note.Actions, key) {
			n.log.Debug("ignoring an action", "id", id, "action", key, "sender", s.Sender)
			return
		}
		// One action per notification: the server closes it once acted on.
		n.forget(id, s.Sender)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			ctx, cancel := context.WithTimeout(n.ctx, actionTimeout)
			defer cancel()
			if err := n.act(ctx, key, note); err != nil {
				n.log.Warn("notification action failed", "action", key, "run_id", note.RunID, "reference", note.Ref, "error", err)
			}
		}()
	}
}

// act carries out one action.
func (n *Notifier) act(ctx context.Context, key string, note openNote) error {
	switch key {
	case ActionSnooze:
		if err := Snooze(n.db, note.Ref, n.now()); err != nil {
			return err
		}
		n.log.Info("reference snoozed: no more notifications about it", "reference", note.Ref)
		return nil
	case ActionReport:
		path, err := n.writeReport(ctx, note.RunID)
		if err != nil {
			return err
		}
		return n.openFile(path)
	case ActionPrune:
		id, err := n.actor.Prune(ctx)
		if err != nil {
			return fmt.Errorf("starting prune: %w", err)
		}
		n.log.Info("prune started from a notification", "run_id", id)
		return nil
	case ActionPull:
		id, err := n.actor.Pull(ctx, note.Ref)
		if err != nil {
			return fmt.Errorf("pulling %s: %w", note.Ref, err)
		}
		n.log.Info("pull started from a notification", "reference", note.Ref, "run_id", id)
		return nil
	}
	return fmt.Errorf("unknown action %q", key)
}

// writeReport writes the run's report to ReportDir/RUN.txt (0600) and
// returns its path.
func (n *Notifier) writeReport(ctx context.Context, runID string) (string, error) {
	if runID == "" || strings.ContainsAny(runID, "/\x00") || runID == "." || runID == ".." {
		return "", fmt.Errorf("invalid run id %q", runID)
	}
	if n.reportDir == "" {
		return "", errors.New("no directory for reports: XDG_RUNTIME_DIR is not set")
	}
	text, err := n.actor.Report(ctx, runID)
	if err != nil {
		return "", fmt.Errorf("report of run %s: %w", runID, err)
	}
	if err := os.MkdirAll(n.reportDir, 0o700); err != nil {
		return "", fmt.Errorf("creating %s: %w", n.reportDir, err)
	}
	path := filepath.Join(n.reportDir, runID+".txt")
	tmp, err := os.CreateTemp(n.reportDir, ".report-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// DefaultOpener is xdg-open; under a systemd service (INVOCATION_ID set)
// it runs in a scope of its own (systemd-run --user --scope), or the viewer
// it starts would live in the service's cgroup and be killed when the
// daemon exits idle.
func DefaultOpener() []string {
	if os.Getenv("INVOCATION_ID") != "" {
		if _, err := exec.LookPath("systemd-run"); err == nil {
			return []string{"systemd-run", "--user", "--scope", "--collect", "--quiet", "--", "xdg-open"}
		}
	}
	return []string{"xdg-open"}
}

// openFile starts the opener on path, detached (own session), and reaps it
// in the background.
func (n *Notifier) openFile(path string) error {
	cmd := exec.Command(n.opener[0], append(n.opener[1:len(n.opener):len(n.opener)], path)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	n.log.Info("report opened", "path", path, "opener", n.opener[0])
	go func() {
		if err := cmd.Wait(); err != nil {
			n.log.Warn("report opener", "path", path, "error", err)
		}
	}()
	return nil
}

// Close stops listening for actions and waits for actions in progress.
func (n *Notifier) Close() {
	n.cancel()
	if n.sigs != nil {
		n.conn.RemoveSignal(n.sigs)
	}
	n.wg.Wait()
}
