package worker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/stowage/stowage/service/journal"
)

// MaxLogLine bounds one line of a worker's stderr: a longer line is cut
// there, marked with TruncatedMarker, and the rest of it is discarded.
const MaxLogLine = 64 << 10

// TruncatedMarker ends a line cut at MaxLogLine.
const TruncatedMarker = " [… line truncated at 64 KiB]"

// reservedFields are the journal fields the daemon itself attaches to a
// worker's records (job, run id, trigger, the record's origin) or gives a
// meaning (kind selects the MESSAGE_ID). A worker attribute mapping to one
// of them is renamed worker_<key> rather than overriding it.
var reservedFields = map[string]bool{
	journal.FieldName(journal.AttrJob):     true,
	journal.FieldName(journal.AttrRunID):   true,
	journal.FieldName(journal.AttrTrigger): true,
	journal.FieldName(journal.AttrSource):  true,
	journal.FieldName(journal.AttrKind):    true,
}

// Record is one line of a worker's stderr as the daemon re-emits it.
type Record struct {
	Level   slog.Level
	Message string
	// Attrs are the record's attributes in their order, nested objects
	// flattened (parent_child), each key usable as a journal field name.
	Attrs []slog.Attr
	// Structured is false for a line that is not a JSON log record (a
	// panic trace, a library writing to stderr): Message is the line.
	Structured bool
}

// ParseLine converts one line of a worker's stderr. A JSON object with a
// "level" slog understands and a string "msg" is a record: its level, its
// message and its other members as attributes ("time" is dropped: the
// journal stamps the entry). Anything else is kept verbatim at warning
// level, never dropped.
func ParseLine(line []byte) Record {
	verbatim := Record{Level: slog.LevelWarn, Message: strings.ToValidUTF8(string(line), "\uFFFD")}
	dec := json.NewDecoder(bytes.NewReader(line))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return verbatim
	}
	r := Record{Structured: true}
	var haveLevel, haveMsg bool
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return verbatim
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return verbatim
		}
		switch key {
		case slog.TimeKey:
			continue
		case slog.LevelKey:
			var s string
			if json.Unmarshal(raw, &s) != nil || r.Level.UnmarshalText([]byte(s)) != nil {
				return verbatim
			}
			haveLevel = true
			continue
		case slog.MessageKey:
			if json.Unmarshal(raw, &r.Message) != nil {
				return verbatim
			}
			haveMsg = true
			continue
		}
		if r.Attrs, err = appendJSON(r.Attrs, key, raw); err != nil {
			return verbatim
		}
	}
	// The object must end the line: dec.More is true for trailing data.
	if t, err := dec.Token(); err != nil || t != json.Delim('}') || dec.More() || !haveLevel || !haveMsg {
		return verbatim
	}
	for i, a := range r.Attrs {
		r.Attrs[i].Key = attrKey(a.Key)
	}
	return r
}

// appendJSON appends the attribute key=raw; an object becomes one attribute
// per member, its key prefixed with key and '_' (as slog groups are).
func appendJSON(dst []slog.Attr, key string, raw json.RawMessage) ([]slog.Attr, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return dst, fmt.Errorf("empty value")
	}
	switch raw[0] {
	case '{':
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil {
			return dst, err
		}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return dst, err
			}
			sub, _ := t.(string)
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return dst, err
			}
			if dst, err = appendJSON(dst, key+"_"+sub, v); err != nil {
				return dst, err
			}
		}
		return dst, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return dst, err
		}
		return append(dst, slog.String(key, s)), nil
	case 't', 'f':
		return append(dst, slog.Bool(key, raw[0] == 't')), nil
	}
	// Numbers exactly as written; null and arrays as compact JSON.
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return dst, err
	}
	return append(dst, slog.String(key, b.String())), nil
}

// attrKey makes a worker's attribute key safe to re-emit: a key with no
// usable character becomes "attr", one that would set a reserved field
// becomes worker_<key>.
func attrKey(k string) string {
	name := journal.FieldName(k)
	switch {
	case name == "":
		return "attr"
	case reservedFields[name]:
		return "worker_" + k
	}
	return k
}

// Tail renders attributes as a compact " key=value" suffix for a message.
func Tail(attrs []slog.Attr) string {
	var b strings.Builder
	for _, a := range attrs {
		v := a.Value.String()
		if v == "" || strings.ContainsAny(v, " \"=\n\t") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
	}
	return b.String()
}

// truncateLine cuts line to MaxLogLine bytes (at a character boundary) and
// appends TruncatedMarker.
func truncateLine(line []byte) []byte {
	if len(line) <= MaxLogLine {
		return line
	}
	n := MaxLogLine
	for n > 0 && !utf8.RuneStart(line[n]) {
		n--
	}
	return append(line[:n:n], TruncatedMarker...)
}
