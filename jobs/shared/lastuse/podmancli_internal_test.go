package lastuse

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// Lines as podman prints them with --format json: 4.3.1 (verified here) and
// 5.x (time in seconds plus timeNano).
const (
	v4Create = `{"ID":"46a2e955d8ab","Image":"localhost/e:1","Name":"c1","Status":"create","Time":"2026-12-02T07:53:37.163018436Z","Type":"container","Attributes":{}}`
	v4Start  = `{"ID":"46a2e955d8ab","Image":"localhost/e:1","Name":"c1","Status":"start","Time":"2026-12-02T08:53:37.5+01:00","Type":"container","Attributes":{"io.x":"y"}}`
	v4Remove = `{"ID":"46a2e955d8ab","Image":"localhost/e:1","Name":"c1","Status":"remove","Time":"2026-12-02T07:53:38Z","Type":"container","Attributes":{}}`
	v4Image  = `{"ID":"e7ab17c8e754","Name":"localhost/e:1","Status":"tag","Time":"2026-12-02T07:53:37.023856689Z","Type":"image","Attributes":null}`
	v5Start  = `{"ID":"7f0c","Image":"quay.io/x/y:latest","Name":"web","Status":"start","time":1796201617,"timeNano":1796201617123456789,"Type":"container","Attributes":{"image":"quay.io/x/y:latest"}}`
	v5NoNano = `{"ID":"7f0c","Image":"sha256:0123456789abcdef","Name":"web","Status":"create","time":1796198017,"Type":"container"}`
)

func TestParseCLIEventLine(t *testing.T) {
	for _, tt := range []struct {
		name    string
		line    string
		want    Use
		ok      bool
		wantErr string
	}{
		{name: "blank", line: "  \t"},
		{name: "4.3 create", line: v4Create, ok: true,
			want: Use{Name: "localhost/e:1", At: time.Date(2026, 12, 2, 7, 53, 37, 163018436, time.UTC)}},
		{name: "4.3 start with offset", line: v4Start, ok: true,
			want: Use{Name: "localhost/e:1", At: time.Date(2026, 12, 2, 7, 53, 37, 500000000, time.UTC)}},
		{name: "4.3 remove is not a use", line: v4Remove},
		{name: "image event", line: v4Image},
		{name: "5.x timeNano", line: v5Start, ok: true, want: Use{Name: "quay.io/x/y:latest", At: time.Unix(0, 1796201617123456789)}},
		{name: "5.x seconds only", line: v5NoNano, ok: true, want: Use{Name: "sha256:0123456789abcdef", At: time.Unix(1796198017, 0)}},
		{name: "no image", line: `{"Status":"start","Type":"container","Time":"2026-12-02T07:53:37Z"}`},
		{name: "no time", line: `{"Image":"a","Status":"start","Type":"container"}`, wantErr: "no time"},
		{name: "null time", line: `{"Image":"a","Status":"start","Type":"container","Time":null}`, wantErr: "no time"},
		{name: "bad time string", line: `{"Image":"a","Status":"start","Type":"container","Time":"yesterday"}`, wantErr: "event time"},
		{name: "bad time type", line: `{"Image":"a","Status":"start","Type":"container","time":true}`, wantErr: "event time"},
		{name: "not JSON", line: `time="2026-12-02T07:53:37Z" level=warning msg="x"`, wantErr: "invalid character"},
		{name: "truncated", line: v4Create[:40], wantErr: "unexpected end"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, ok, err := parseCLIEventLine([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.ok || u.Name != tt.want.Name || !u.At.Equal(tt.want.At) || u.ImageID != "" {
				t.Fatalf("got %+v ok=%v, want %+v ok=%v", u, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestParseCLIEvents: the window is cut at until; one unreadable line fails
// the scan so the cursor is not advanced past uses stowage did not read.
func TestParseCLIEvents(t *testing.T) {
	out := strings.Join([]string{v4Image, v4Create, v4Start, v4Remove, v5Start, ""}, "\n")
	until := time.Date(2026, 12, 2, 7, 53, 37, 200000000, time.UTC)
	uses, err := parseCLIEvents([]byte(out), until)
	if err != nil {
		t.Fatal(err)
	}
	if len(uses) != 1 || !uses[0].At.Equal(time.Date(2026, 12, 2, 7, 53, 37, 163018436, time.UTC)) {
		t.Fatalf("uses %+v, want only the create before %v", uses, until)
	}
	uses, err = parseCLIEvents([]byte(out), time.Time{})
	if err != nil || len(uses) != 3 {
		t.Fatalf("without until: %+v, %v; want 3 uses", uses, err)
	}
	if _, err := parseCLIEvents([]byte(v4Create+"\nnot json\n"), time.Time{}); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: error %v, want one naming line 2", err)
	}
	if uses, err := parseCLIEvents(nil, time.Time{}); err != nil || len(uses) != 0 {
		t.Fatalf("empty output: %+v, %v", uses, err)
	}
}

func TestCLIArgs(t *testing.T) {
	since := time.Date(2026, 12, 2, 8, 53, 37, 900, time.FixedZone("x", 3600))
	got := cliArgs([]string{"--root", "/r"}, since)
	want := []string{"--root", "/r", "events", "--stream=false", "--format", "json",
		"--filter", "type=container", "--filter", "event=create", "--filter", "event=start",
		"--since", "2026-12-02T07:53:37Z"}
	if !slices.Equal(got, want) {
		t.Fatalf("args %q\nwant %q", got, want)
	}
}

// FuzzParseCLIEventLine: no input panics, and an accepted line is a
// container use with a name and a time.
func FuzzParseCLIEventLine(f *testing.F) {
	for _, s := range []string{v4Create, v4Start, v4Remove, v4Image, v5Start, v5NoNano, "", "{}", "null", `{"Time":1}`, `{"timeNano":-1,"time":-5,"Type":"container","Status":"start","Image":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		u, ok, err := parseCLIEventLine(line)
		if err != nil && ok {
			t.Fatalf("ok with error %v", err)
		}
		if ok && (u.Name == "" || u.ImageID != "" || u.At.IsZero()) {
			t.Fatalf("accepted %q as %+v", line, u)
		}
		if bytes.ContainsRune(line, '\n') {
			return
		}
		uses, err2 := parseCLIEvents(line, time.Time{})
		if (err2 != nil) != (err != nil) || len(uses) != map[bool]int{true: 1}[ok] {
			t.Fatalf("parseCLIEvents (%+v, %v) and parseCLIEventLine (%v, %v) disagree on %q", uses, err2, ok, err, line)
		}
	})
}

func parseErr(line []byte) error {
	_, _, err := parseCLIEventLine(line)
	return err
}
