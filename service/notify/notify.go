// Package notify sends desktop notifications (org.freedesktop.Notifications)
// for job findings: at most one per job run, summarising the run's new
// findings at or above the policy's minimum urgency, and updating the
// notification of the same topic in place (replaces_id). A finding is shown
// once while it persists: seen findings and the ids per topic live in the
// state DB, so a daemon restart does not repeat them. A finding no run has
// reported for SeenRetention is forgotten (and shown again if it returns).
//
// With an Actor, and when the server advertises the "actions" capability,
// a notification offers actions (see planActions): "prune", "pull",
// "report" and "snooze". The Notifier remembers what each notification id
// is about (memory and state DB), listens for ActionInvoked and
// NotificationClosed, snoozes references itself, writes and opens reports,
// and asks the Actor to prune or pull. ActionsOpen tells the process
// whether it must stay up so that no ActionInvoked is missed.
package notify

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
)

// Names of the freedesktop notification service.
const (
	ServiceName                     = "org.freedesktop.Notifications"
	ServicePath     dbus.ObjectPath = "/org/freedesktop/Notifications"
	ServiceNotify                   = "org.freedesktop.Notifications.Notify"
	AppName                         = "stowage"
	DesktopEntry                    = "io.github.stowage"
	Icon                            = "drive-harddisk"
	maxBodyFindings                 = 8
)

// Bucket is the state DB bucket of this package: "seen/<hash>" → the last
// time a run reported the finding, "topic/<topic>" → last notification id,
// "snooze/<ref>" → when the reference was snoozed, "open/<id>" → what an
// open notification with actions is about.
const Bucket = "notify"

// SeenRetention is how long a finding no run reports any more stays known.
const SeenRetention = 90 * 24 * time.Hour

// expiredSeen returns the seen keys last reported before now-retention.
// Pure.
func expiredSeen(seen map[string]time.Time, now time.Time, retention time.Duration) []string {
	var out []string
	for k, t := range seen {
		if now.Sub(t) > retention {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Options configure a Notifier.
type Options struct {
	// Conn is the session bus connection.
	Conn *dbus.Conn
	// State persists seen findings and ids per topic.
	State *state.DB
	// Policy is the [notify] section; Desktop=false disables sending.
	Policy policy.Notify
	// Logger; nil discards.
	Logger *slog.Logger
	// Clock tells the time; nil means clock.Real.
	Clock clock.Clock
	// Timeout is the expire_timeout passed to Notify in ms; 0 lets the
	// server decide (-1).
	Timeout time.Duration
	// Actor carries out prune and pull; nil sends notifications without
	// actions and does not listen for them.
	Actor Actor
	// ReportDir receives the reports the "report" action writes; empty
	// means $XDG_RUNTIME_DIR/stowage/reports.
	ReportDir string
	// Opener opens a report file (the path is appended); nil means
	// DefaultOpener.
	Opener []string
	// Events are the jobs' kinds of event (jobspec.Registry.EventKinds),
	// whose titles name a finding; an unknown kind is named after itself.
	Events []report.EventKind
	// Hold bounds how long a notification with actions counts as open
	// (ActionsOpen) when no NotificationClosed arrives: DefaultHold when 0,
	// and at most Timeout plus a minute when Timeout is set.
	Hold time.Duration
}

// Notifier sends notifications; safe for concurrent use.
type Notifier struct {
	conn    *dbus.Conn
	db      *state.DB
	log     *slog.Logger
	now     func() time.Time
	timeout int32
	events  []report.EventKind

	mu  sync.Mutex // serialises runs (seen-set read-modify-write) and guards pol
	pol policy.Notify

	actor     Actor
	reportDir string
	opener    []string
	hold      time.Duration
	ctx       context.Context // ends with Close
	cancel    context.CancelFunc
	sigs      chan *dbus.Signal
	wg        sync.WaitGroup // the signal loop and actions in progress

	openMu sync.Mutex          // guards open (never held across D-Bus calls)
	open   map[uint32]openNote // notifications with actions, by id
}

// New returns a Notifier; with an Actor it listens for actions until Close.
func New(opts Options) (*Notifier, error) {
	if opts.Conn == nil || opts.State == nil {
		return nil, errors.New("notify: New needs a bus connection and a state DB")
	}
	n := &Notifier{conn: opts.Conn, db: opts.State, log: opts.Logger, now: clockOrReal(opts.Clock).Now, pol: opts.Policy, timeout: -1, events: opts.Events,
		actor: opts.Actor, reportDir: opts.ReportDir, opener: opts.Opener, hold: opts.Hold, open: map[uint32]openNote{}}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if opts.Timeout > 0 {
		n.timeout = int32(min(opts.Timeout.Milliseconds(), 1<<31-1))
	}
	if len(n.opener) == 0 {
		n.opener = DefaultOpener()
	}
	if n.reportDir == "" {
		if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
			n.reportDir = filepath.Join(rt, "stowage", "reports")
		}
	}
	if n.hold <= 0 {
		n.hold = DefaultHold
	}
	if opts.Timeout > 0 {
		// The server closes it at its timeout; a minute's grace for the
		// user's click that raced it.
		n.hold = min(n.hold, opts.Timeout+time.Minute)
	}
	if n.actor == nil {
		return n, nil
	}
	if err := n.loadOpen(); err != nil {
		n.log.Warn("reading open notifications", "error", err)
	}
	if err := n.listen(); err != nil {
		n.cancel()
		return nil, err
	}
	return n, nil
}

// SetPolicy applies a reloaded [notify] section.
func (n *Notifier) SetPolicy(p policy.Notify) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pol = p
}

// Sent describes the notification NotifyRun sent.
type Sent struct {
	ID       uint32
	Topic    string
	Summary  string
	Body     string
	Urgency  byte
	Findings int
	// Actions is the actions array sent (key, label, ...), empty without.
	Actions []string
}

// NotifyRun sends at most one notification for a job run: the events not
// seen before and at or above the minimum urgency. It returns nil, nil when
// there is nothing new (or notifications are off). Findings are marked seen
// only once the notification server accepted them, so a failure retries
// them with the next run.
func (n *Notifier) NotifyRun(ctx context.Context, job, runID string, events []report.Event) (*Sent, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.pol.Desktop {
		return nil, nil
	}
	floor := urgency(n.pol.MinUrgency)
	var (
		fresh    []report.Event
		keys     []string
		again    []string // keys of findings reported before and now again
		sent     Sent
		replaces uint32 // the topic's last notification id, 0 for a new one
	)
	err := n.db.View(Bucket, func(b *bolt.Bucket) error {
		dup := map[string]bool{}
		snoozed := snoozedIn(b)
		for _, ev := range events {
			if urgency(policy.Urgency(ev.Severity)) < floor {
				continue
			}
			if ev.Reference != "" && snoozed[ev.Reference] {
				// The user said "don't remind me": not shown, not
				// marked seen (un-snoozing shows it again).
				continue
			}
			k := findingKey(job, ev)
			if dup[k] {
				continue
			}
			if b != nil && b.Get([]byte(k)) != nil {
				dup[k] = true
				again = append(again, k)
				continue
			}
			dup[k] = true
			fresh = append(fresh, ev)
			keys = append(keys, k)
		}
		if len(fresh) == 0 {
			return nil
		}
		sent = compose(n.events, job, fresh)
		if b == nil {
			return nil
		}
		return ignoreNotFound(state.GetJSON(b, topicKey(sent.Topic), &replaces))
	})
	if err != nil {
		return nil, fmt.Errorf("notify: reading seen findings: %w", err)
	}
	now := n.now().UTC()
	if len(fresh) == 0 {
		if err := n.touch(again, nil, 0, "", now); err != nil {
			return nil, err
		}
		return nil, nil
	}
	hints := map[string]dbus.Variant{
		"urgency":       dbus.MakeVariant(sent.Urgency),
		"desktop-entry": dbus.MakeVariant(DesktopEntry),
	}
	if sent.Urgency == 0 {
		hints["transient"] = dbus.MakeVariant(true)
	}
	actions := []string{}
	var note *openNote
	server, caps := n.server(ctx)
	// A server that reads markup in bodies would take a finding's "<" or
	// "&" for markup (dunst then drops the text it cannot parse).
	body := sent.Body
	if slices.Contains(caps, capabilityMarkup) {
		body = markupEscaper.Replace(body)
	}
	if n.actor != nil {
		if slices.Contains(caps, capabilityActions) {
			acts, ref := planActions(fresh, events)
			actions = actionArray(acts)
			note = &openNote{RunID: runID, Job: job, Ref: ref, Server: server, Until: now.Add(n.hold)}
			for _, a := range acts {
				note.Actions = append(note.Actions, a.Key)
			}
		}
	}
	var id uint32
	err = n.conn.Object(ServiceName, ServicePath).CallWithContext(ctx, ServiceNotify, 0,
		AppName, replaces, Icon, sent.Summary, body, actions, hints, n.timeout).Store(&id)
	if err != nil {
		return nil, fmt.Errorf("notify: Notify: %w", err)
	}
	sent.ID = id
	sent.Actions = actions
	if n.actor != nil {
		// A notification replaced in place without actions is forgotten.
		if err := n.remember(id, note); err != nil {
			n.log.Warn("remembering a notification's actions", "id", id, "error", err)
		}
	}
	if err := n.touch(again, keys, id, sent.Topic, now); err != nil {
		return &sent, fmt.Errorf("notify: recording notification %d: %w", id, err)
	}
	n.log.Debug("notification sent", "job", job, "run_id", runID, "id", id,
		"topic", sent.Topic, "findings", len(fresh))
	return &sent, nil
}

// touch records, in one transaction, that the findings again and fresh
// were reported at now, the topic's notification id (when topic is set),
// and forgets the findings not reported within SeenRetention.
func (n *Notifier) touch(again, fresh []string, id uint32, topic string, now time.Time) error {
	err := n.db.Update(Bucket, func(b *bolt.Bucket) error {
		for _, k := range append(again, fresh...) {
			if err := state.PutJSON(b, k, now); err != nil {
				return err
			}
		}
		if topic != "" {
			if err := state.PutJSON(b, topicKey(topic), id); err != nil {
				return err
			}
		}
		seen := map[string]time.Time{}
		c := b.Cursor()
		prefix := []byte("seen/")
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var t time.Time
			if state.GetJSON(b, string(k), &t) == nil {
				seen[string(k)] = t
			}
		}
		for _, k := range expiredSeen(seen, now, SeenRetention) {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("notify: recording seen findings: %w", err)
	}
	return nil
}

func ignoreNotFound(err error) error {
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	return err
}

// urgency maps a severity/urgency name to the freedesktop byte; unknown or
// empty names count as normal.
func urgency(u policy.Urgency) byte { return u.Level() }

// findingKey identifies a finding by what it is about, independently of
// its wording and of the job that reported it.
func findingKey(job string, ev report.Event) string {
	parts := []string{ev.Kind, ev.Topic, ev.Image, ev.Reference, ev.Digest, ev.Volume}
	if ev.Newer != "" {
		// Only when set, so the keys of other findings stay as they were.
		parts = append(parts, ev.Newer)
	}
	if ev.Topic == "" && ev.Image == "" && ev.Reference == "" && ev.Digest == "" && ev.Volume == "" {
		// Nothing identifies it but its job and wording.
		parts = append(parts, job, ev.Message)
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "seen/" + hex.EncodeToString(sum[:16])
}

func topicKey(topic string) string { return "topic/" + topic }

// eventTopic is an event's notification topic: its own, else job and kind.
func eventTopic(job string, ev report.Event) string {
	if ev.Topic != "" {
		return ev.Topic
	}
	return job + "/" + ev.Kind
}

// compose builds the one notification of a run: the topic and urgency of
// its most severe finding, a summary line, and one body line per finding;
// events title the kinds.
func compose(events []report.EventKind, job string, fresh []report.Event) Sent {
	lead := fresh[0]
	for _, ev := range fresh[1:] {
		if urgency(policy.Urgency(ev.Severity)) > urgency(policy.Urgency(lead.Severity)) {
			lead = ev
		}
	}
	s := Sent{Topic: eventTopic(job, lead), Urgency: urgency(policy.Urgency(lead.Severity)), Findings: len(fresh)}
	if len(fresh) == 1 {
		s.Summary = fmt.Sprintf("stowage %s: %s", job, kindTitle(events, lead.Kind))
	} else {
		s.Summary = fmt.Sprintf("stowage %s: %d new findings", job, len(fresh))
	}
	var lines []string
	for i, ev := range fresh {
		if i == maxBodyFindings {
			lines = append(lines, fmt.Sprintf("… and %d more", len(fresh)-i))
			break
		}
		msg := ev.Message
		if msg == "" {
			msg = strings.TrimSpace(kindTitle(events, ev.Kind) + " " + firstNonEmpty(ev.Reference, ev.Image, ev.Volume))
		}
		lines = append(lines, msg)
	}
	s.Body = strings.Join(lines, "\n")
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// kindTitle names an event kind: its title in the job's descriptor.
func kindTitle(events []report.EventKind, kind string) string {
	if i := slices.IndexFunc(events, func(k report.EventKind) bool { return k.Kind == kind }); i >= 0 {
		return events[i].Title
	}
	return strings.ReplaceAll(kind, "_", " ")
}

// clockOrReal is c, or the system clock when c is nil.
func clockOrReal(c clock.Clock) clock.Clock {
	if c == nil {
		return clock.Real
	}
	return c
}

// markupEscaper escapes text for a body the server reads as markup (the
// Desktop Notifications Specification's body-markup).
var markupEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
