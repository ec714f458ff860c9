package refresh

import (
	"bytes"
	"strings"
	"testing"
)

func TestPrintRefreshNewer(t *testing.T) {
	var b bytes.Buffer
	rep := &Report{Results: []Result{{Reference: "r.example/app:1.25", Status: StatusCurrent}},
		Newer: []NewerResult{
			{Reference: "r.example/app:1.25", Level: "minor", Newer: "1.27", New: true},
			{Reference: "r.example/db:16", Level: "minor", Error: "request budget for this registry exhausted"},
		}}
	if err := printText(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"LEVEL  NEWER  NEW", "r.example/app:1.25  minor  1.27   true", "r.example/db:16     minor  -      false  request budget"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
