package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/refresh"
)

func TestHistoryWriteNewer(t *testing.T) {
	var b bytes.Buffer
	if err := writeNewer(&b, []refresh.Record{{Reference: "r.example/a:1"}}); err != nil || b.Len() != 0 {
		t.Fatalf("no newer versions: %q, %v", b.String(), err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	recs := []refresh.Record{
		{Reference: "r.example/app:1.25", Newer: []refresh.NewerSeen{{Tag: "1.26", FirstSeen: at, LastSeen: at}, {Tag: "1.27", FirstSeen: at, LastSeen: at}}},
		{Reference: "r.example/b:2"},
	}
	if err := writeNewer(&b, recs); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "REFERENCE") || !strings.Contains(lines[0], "NEWER VERSION") ||
		!strings.Contains(lines[1], "r.example/app:1.25") || !strings.Contains(lines[1], "1.26") || !strings.Contains(lines[2], "1.27") {
		t.Errorf("output:\n%s", b.String())
	}
}
