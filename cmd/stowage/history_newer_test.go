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

func TestPrintRefreshNewer(t *testing.T) {
	var b bytes.Buffer
	rep := &refresh.Report{Results: []refresh.Result{{Reference: "r.example/app:1.25", Status: refresh.StatusCurrent}},
		Newer: []refresh.NewerResult{
			{Reference: "r.example/app:1.25", Level: "minor", Newer: "1.27", New: true},
			{Reference: "r.example/db:16", Level: "minor", Error: "request budget for this registry exhausted"},
		}}
	if err := printRefresh(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"LEVEL  NEWER  NEW", "r.example/app:1.25  minor  1.27   true", "r.example/db:16     minor  -      false  request budget"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
