package worker

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/test/testjobs"
)

// runAttrs are what the daemon attaches to every record of a run's worker.
var runAttrs = []slog.Attr{
	slog.String(journal.AttrJob, "prune"), slog.String(journal.AttrSource, "worker"),
	slog.String(journal.AttrRunID, "r1"), slog.String(journal.AttrTrigger, "schedule"),
}

// journalEntry is what the daemon's journal handler sends for one line:
// MESSAGE, PRIORITY and the fields.
func journalEntry(line string) map[string]string {
	r := ParseLine([]byte(line))
	f := journal.Fields(append(append([]slog.Attr(nil), runAttrs...), r.Attrs...), journal.MessageIDs(testjobs.Registry().EventKinds()))
	f["MESSAGE"] = r.Message
	f["PRIORITY"] = string(rune('0' + journal.Priority(r.Level)))
	return f
}

// The JSON line → journal entry conversion: levels, nesting, names that are
// no field names, attributes that try to override the run's own fields,
// and lines that are no JSON record.
func TestLineToJournalFields(t *testing.T) {
	base := map[string]string{
		"SYSLOG_IDENTIFIER": "stowage", "STOWAGE_JOB": "prune", "STOWAGE_SOURCE": "worker",
		"STOWAGE_RUN_ID": "r1", "STOWAGE_TRIGGER": "schedule",
	}
	with := func(kv ...string) map[string]string {
		m := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	huge := `{"level":"INFO","msg":"x","big":"` + strings.Repeat("a", 70<<10) + `"}`
	for _, c := range []struct {
		name, line string
		want       map[string]string
	}{
		{"info with image and reference",
			`{"time":"2026-12-02T11:00:00Z","level":"INFO","msg":"removed image","image":"4f3c","reference":"localhost/a:1","bytes":1024,"reason":"lru"}`,
			with("MESSAGE", "removed image", "PRIORITY", "6", "STOWAGE_IMAGE", "4f3c", "STOWAGE_REFERENCE", "localhost/a:1",
				"STOWAGE_BYTES", "1024", "STOWAGE_REASON", "lru")},
		{"debug", `{"level":"DEBUG","msg":"d"}`, with("MESSAGE", "d", "PRIORITY", "7")},
		{"warn", `{"level":"WARN","msg":"w","err":"boom"}`, with("MESSAGE", "w", "PRIORITY", "4", "STOWAGE_ERR", "boom")},
		{"error", `{"level":"ERROR","msg":"e"}`, with("MESSAGE", "e", "PRIORITY", "3")},
		{"notice (INFO+2)", `{"level":"INFO+2","msg":"n"}`, with("MESSAGE", "n", "PRIORITY", "5")},
		{"critical (ERROR+4)", `{"level":"ERROR+4","msg":"c"}`, with("MESSAGE", "c", "PRIORITY", "2")},
		{"nested groups flattened", `{"level":"INFO","msg":"g","store":{"driver":"vfs","paths":{"graph":"/g"}},"ok":true,"none":null,"list":[1, "a"],"f":1.5e3}`,
			with("MESSAGE", "g", "PRIORITY", "6", "STOWAGE_STORE_DRIVER", "vfs", "STOWAGE_STORE_PATHS_GRAPH", "/g",
				"STOWAGE_OK", "true", "STOWAGE_NONE", "null", "STOWAGE_LIST", `[1,"a"]`, "STOWAGE_F", "1.5e3")},
		{"bad names sanitised", `{"level":"INFO","msg":"b","Mixed-Case key":"v","_lead":"l","é":"x","` + strings.Repeat("k", 80) + `":"long"}`,
			with("MESSAGE", "b", "PRIORITY", "6", "STOWAGE_MIXED_CASE_KEY", "v", "STOWAGE_LEAD", "l", "STOWAGE_ATTR", "x",
				"STOWAGE_"+strings.Repeat("K", 56), "long")},
		{"reserved fields are not overridden", `{"level":"INFO","msg":"r","job":"verify","run_id":"evil","run.id":"dot","trigger":"t","source":"mirror","kind":"image_removed","run":{"id":"nested"}}`,
			with("MESSAGE", "r", "PRIORITY", "6", "STOWAGE_WORKER_JOB", "verify", "STOWAGE_WORKER_RUN_ID", "nested",
				"STOWAGE_WORKER_TRIGGER", "t", "STOWAGE_WORKER_SOURCE", "mirror", "STOWAGE_WORKER_KIND", "image_removed")},
		{"not JSON: verbatim at warning", `panic: runtime error: index out of range [3] with length 2`,
			with("MESSAGE", "panic: runtime error: index out of range [3] with length 2", "PRIORITY", "4")},
		{"JSON but no record (no level)", `{"msg":"m","image":"x"}`, with("MESSAGE", `{"msg":"m","image":"x"}`, "PRIORITY", "4")},
		{"unknown level", `{"level":"LOUD","msg":"m"}`, with("MESSAGE", `{"level":"LOUD","msg":"m"}`, "PRIORITY", "4")},
		{"msg not a string", `{"level":"INFO","msg":3}`, with("MESSAGE", `{"level":"INFO","msg":3}`, "PRIORITY", "4")},
		{"trailing data", `{"level":"INFO","msg":"m"} tail`, with("MESSAGE", `{"level":"INFO","msg":"m"} tail`, "PRIORITY", "4")},
		{"cut JSON", `{"level":"INFO","msg":"m","image":"ab`, with("MESSAGE", `{"level":"INFO","msg":"m","image":"ab`, "PRIORITY", "4")},
		{"a JSON array", `[1,2]`, with("MESSAGE", `[1,2]`, "PRIORITY", "4")},
		{"invalid UTF-8", "bad \xff byte", with("MESSAGE", "bad \uFFFD byte", "PRIORITY", "4")},
		{"huge JSON line parses whole (lineLogger bounds it first)", huge,
			with("MESSAGE", "x", "PRIORITY", "6", "STOWAGE_BIG", strings.Repeat("a", 70<<10))},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := journalEntry(c.line)
			if !maps.Equal(got, c.want) {
				t.Errorf("line %.200q\n got %v\nwant %v", c.line, trim(got), trim(c.want))
			}
		})
	}
}

func trim(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if len(v) > 100 {
			v = v[:100] + "…"
		}
		out[k] = v
	}
	return out
}

// recordingHandler keeps what the daemon's logger receives.
type recordingHandler struct {
	recs *[]slog.Record
}

func (h recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordingHandler) Handle(_ context.Context, r slog.Record) error {
	*h.recs = append(*h.recs, r)
	return nil
}
func (h recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestLineLoggerBounds: lines split across writes are joined; a line longer
// than MaxLogLine is cut with the marker and its rest dropped, the next
// line is intact; a last line without newline is flushed; an optional
// key=value tail is appended to the message.
func TestLineLoggerBounds(t *testing.T) {
	var recs []slog.Record
	l := &lineLogger{log: slog.New(recordingHandler{&recs}), tail: true}
	rec := func(level, msg string, kv ...any) string {
		m := map[string]any{"level": level, "msg": msg}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		j, _ := json.Marshal(m)
		return string(j)
	}
	first := rec("WARN", "split", "image", "abc")
	writes := []string{first[:10], first[10:] + "\n" + strings.Repeat("z", MaxLogLine-3)}
	writes = append(writes, strings.Repeat("z", 10<<10), strings.Repeat("z", 100<<10)+"\n", rec("ERROR", "after", "volume", "v 1")+"\n", "no newline")
	for _, w := range writes {
		if n, err := l.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if len(l.partial) > MaxLogLine+1 {
		t.Fatalf("buffered %d bytes", len(l.partial))
	}
	l.flush()
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4", len(recs))
	}
	if recs[0].Level != slog.LevelWarn || recs[0].Message != "split image=abc" {
		t.Errorf("first: %v %q", recs[0].Level, recs[0].Message)
	}
	cut := recs[1].Message
	if recs[1].Level != slog.LevelWarn || len(cut) != MaxLogLine+len(TruncatedMarker) || !strings.HasSuffix(cut, "z"+TruncatedMarker) {
		t.Errorf("cut line: %v, %d bytes, ends %q", recs[1].Level, len(cut), cut[max(0, len(cut)-40):])
	}
	if recs[2].Level != slog.LevelError || recs[2].Message != `after volume="v 1"` {
		t.Errorf("after the cut line: %v %q", recs[2].Level, recs[2].Message)
	}
	if recs[3].Level != slog.LevelWarn || recs[3].Message != "no newline" {
		t.Errorf("flushed: %v %q", recs[3].Level, recs[3].Message)
	}
}
