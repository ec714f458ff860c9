// Package journal is stowage's slog handler for systemd-journald: every
// record becomes one native journal entry with SYSLOG_IDENTIFIER=stowage, a
// PRIORITY from its level, a MESSAGE_ID per event kind (explained by the
// stowage.catalog message catalog) and UPPERCASE STOWAGE_* fields from its
// attributes. Without a journal socket it writes plain stderr lines with
// sd-daemon "<N>" priority prefixes, which journald (or a terminal) reads.
package journal

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/stowage/stowage/jobs/shared/report"
)

// Identifier is the SYSLOG_IDENTIFIER of every entry.
const Identifier = "stowage"

// Daemon event kinds; the jobs' kinds are listed in their descriptors
// (jobspec.Registry.EventKinds), which the command line hands over
// (Options.Events).
const (
	KindJobStarted    = "job_started"
	KindJobFinished   = "job_finished"
	KindJobFailed     = "job_failed"
	KindPolicyInvalid = "policy_invalid"
)

// Attribute keys with a fixed meaning. Any other attribute key k becomes the
// journal field STOWAGE_<K> (upper-cased, non-alphanumerics as '_').
const (
	// AttrKind selects the MESSAGE_ID (its value is an event kind) and is
	// also recorded as STOWAGE_KIND.
	AttrKind    = "kind"
	AttrJob     = "job"
	AttrRunID   = "run_id"
	AttrTrigger = "trigger"
	// AttrSource is "worker" on the records a worker wrote on its stderr
	// and the daemon re-emitted (STOWAGE_SOURCE=worker).
	AttrSource    = "source"
	AttrImage     = "image"
	AttrReference = "reference"
	AttrDigest    = "digest"
	AttrNewer     = "newer"
	AttrVolume    = "volume"
	AttrBytes     = "bytes"
	AttrSeverity  = "severity"
	AttrTopic     = "topic"
	AttrError     = "error"
)

// daemonMessageIDs are the daemon's own kinds' MESSAGE_IDs; the jobs'
// kinds are in their descriptors (jobspec.Registry.EventKinds). Never change one:
// catalogs and users' journalctl filters refer to them.
var daemonMessageIDs = map[string]string{
	KindJobStarted:    "ba3dcf5d82c24bfc97f7b7506ab11755",
	KindJobFinished:   "b5f0e17590fb4522901ca045e6351409",
	KindJobFailed:     "bccc0babf622449ebf6f70757cc9c10e",
	KindPolicyInvalid: "ad26ecb2bf3e4641adb805017cb91ffd",
}

// MessageIDs returns the kind → MESSAGE_ID table: the daemon's kinds and
// the jobs' (events).
func MessageIDs(events []report.EventKind) map[string]string {
	m := maps.Clone(daemonMessageIDs)
	for _, k := range events {
		m[k.Kind] = k.MessageID
	}
	return m
}

// Priority returns the syslog priority (0 emerg … 7 debug) for a level.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError+4:
		return int(sdjournal.PriCrit)
	case l >= slog.LevelError:
		return int(sdjournal.PriErr)
	case l >= slog.LevelWarn:
		return int(sdjournal.PriWarning)
	case l >= slog.LevelInfo+2:
		return int(sdjournal.PriNotice)
	case l >= slog.LevelInfo:
		return int(sdjournal.PriInfo)
	}
	return int(sdjournal.PriDebug)
}

// Options configure a Handler.
type Options struct {
	// Level is the minimum level logged; nil means slog.LevelInfo.
	Level slog.Leveler
	// Stderr receives the fallback lines when the journal is unavailable;
	// nil means os.Stderr.
	Stderr io.Writer
	// ForceStderr skips the journal even when its socket exists (e.g. when
	// stderr already is a journal stream and the caller prefers it).
	ForceStderr bool
	// Events are the jobs' kinds of event (jobspec.Registry.EventKinds):
	// a record whose "kind" is one of them, or the daemon's, gets its
	// MESSAGE_ID.
	Events []report.EventKind
}

// Handler is an slog.Handler writing to journald or, without it, to stderr.
type Handler struct {
	level   slog.Leveler
	journal bool
	ids     map[string]string // kind → MESSAGE_ID (MessageIDs)
	out     *lockedWriter
	attrs   []slog.Attr // pre-resolved attrs from WithAttrs, already prefixed
	group   string      // current group prefix, "" or "A_B_"
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

var _ slog.Handler = (*Handler)(nil)

// NewHandler returns a Handler that sends to the journal when it is
// reachable (journal.Enabled) and to stderr otherwise.
func NewHandler(opts Options) *Handler {
	h := &Handler{level: opts.Level, ids: MessageIDs(opts.Events)}
	if h.level == nil {
		h.level = slog.LevelInfo
	}
	w := opts.Stderr
	if w == nil {
		w = os.Stderr
	}
	h.out = &lockedWriter{w: w}
	h.journal = !opts.ForceStderr && sdjournal.Enabled()
	return h
}

// UsesJournal reports whether records go to journald (false: stderr).
func (h *Handler) UsesJournal() bool { return h.journal }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	c := *h
	c.attrs = slices.Clip(h.attrs)
	for _, a := range as {
		c.attrs = appendPrefixed(c.attrs, h.group, a)
	}
	return &c
}

// WithGroup implements slog.Handler: attributes in a group get the group
// name as a field prefix (STOWAGE_GROUP_KEY).
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.group = h.group + name + "_"
	return &c
}

func appendPrefixed(dst []slog.Attr, prefix string, a slog.Attr) []slog.Attr {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return dst
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, g := range a.Value.Group() {
			dst = appendPrefixed(dst, p, g)
		}
		return dst
	}
	a.Key = prefix + a.Key
	return append(dst, a)
}

// Handle implements slog.Handler.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		attrs = appendPrefixed(attrs, h.group, a)
		return true
	})
	pri := Priority(r.Level)
	if h.journal {
		err := sdjournal.Send(r.Message, sdjournal.Priority(pri), Fields(attrs, h.ids))
		if err == nil {
			return nil
		}
		// journald went away (restart, shutdown): keep the line on stderr,
		// which systemd also collects, rather than lose it.
		attrs = append(attrs, slog.String("journal_error", err.Error()))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>%s", pri, oneLine(r.Message))
	for _, a := range attrs {
		b.WriteByte(' ')
		b.WriteString(strings.Map(keyRune, a.Key))
		b.WriteByte('=')
		b.WriteString(quoteIfNeeded(valueString(a.Value)))
	}
	b.WriteByte('\n')
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(b.Bytes())
	return err
}

// Fields turns attributes into journal fields (without MESSAGE and
// PRIORITY, which journal.Send adds): SYSLOG_IDENTIFIER, MESSAGE_ID for a
// "kind" in ids (MessageIDs) and STOWAGE_<KEY> for every attribute.
func Fields(attrs []slog.Attr, ids map[string]string) map[string]string {
	f := map[string]string{"SYSLOG_IDENTIFIER": Identifier}
	for _, a := range attrs {
		v := valueString(a.Value)
		if a.Key == AttrKind {
			if id := ids[v]; id != "" {
				f["MESSAGE_ID"] = id
			}
		}
		if name := FieldName(a.Key); name != "" {
			f[name] = v
		}
	}
	return f
}

// FieldName maps an attribute key to its journal field name, STOWAGE_<KEY>:
// upper-case letters, digits and '_' only. It returns "" for a key with no
// usable character.
func FieldName(key string) string {
	var b strings.Builder
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z':
			b.WriteRune(unicode.ToUpper(r))
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" {
		return ""
	}
	// journald drops fields whose names exceed 64 bytes.
	return truncate("STOWAGE_"+s, maxFieldName)
}

const maxFieldName = 64

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func valueString(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339Nano)
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// keyRune keeps logfmt keys one token: whitespace, '=' and quotes become '_'.
func keyRune(r rune) rune {
	if unicode.IsSpace(r) || r == '=' || r == '"' || !unicode.IsPrint(r) {
		return '_'
	}
	return r
}

func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

// LogEvent logs one job event with its kind's MESSAGE_ID and the event's
// fields, at a level derived from its severity.
func LogEvent(ctx context.Context, log *slog.Logger, job, runID string, ev report.Event) {
	level := slog.LevelInfo
	switch ev.Severity {
	case report.SeverityCritical:
		level = slog.LevelError
	case report.SeverityNormal:
		level = slog.LevelWarn
	}
	if level == slog.LevelInfo && isAction(ev.Kind) {
		level = slog.LevelInfo + 2 // notice: stowage changed the store
	}
	attrs := []slog.Attr{slog.String(AttrKind, ev.Kind), slog.String(AttrJob, job)}
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add(AttrRunID, runID)
	add(AttrSeverity, string(ev.Severity))
	add(AttrTopic, ev.Topic)
	add(AttrImage, ev.Image)
	add(AttrReference, ev.Reference)
	add(AttrDigest, ev.Digest)
	add(AttrNewer, ev.Newer)
	add(AttrVolume, ev.Volume)
	if ev.Bytes != 0 {
		attrs = append(attrs, slog.Int64(AttrBytes, ev.Bytes))
	}
	msg := ev.Message
	if msg == "" {
		msg = ev.Kind
	}
	log.LogAttrs(ctx, level, msg, attrs...)
}

// isAction reports whether an event kind records a change stowage made.
func isAction(kind string) bool {
	switch kind {
	case report.EventImageRemoved, report.EventImageUntagged, report.EventImagePulled,
		report.EventLayerRemoved, report.EventVolumeRemoved:
		return true
	}
	return false
}

// LogPolicyInvalid logs a policy that failed to load; kept says whether the
// previous policy stays in force (a reload) or none is loaded (start).
func LogPolicyInvalid(ctx context.Context, log *slog.Logger, path string, err error, kept bool) {
	msg := "policy invalid"
	if kept {
		msg += ", keeping the previous policy"
	}
	log.LogAttrs(ctx, slog.LevelError, msg+": "+errString(err),
		slog.String(AttrKind, KindPolicyInvalid), slog.String("policy_path", path),
		slog.String(AttrError, errString(err)))
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
