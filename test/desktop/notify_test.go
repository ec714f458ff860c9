package desktop

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

// kindCase is one run's findings, worded as the job that reports them
// words them (jobs/*: the Message, Topic and Severity of their events).
type kindCase struct {
	name   string // screenshot file name
	job    string
	events []report.Event
}

// everyKind has one run per event kind the jobs report, and one run with
// several findings.
var everyKind = []kindCase{
	{"drift_detected", report.JobRefresh, []report.Event{{Kind: report.EventDriftDetected, Severity: report.SeverityNormal,
		Message:   "docker.io/library/nginx:1.25 now points to sha256:6f0b3a5ee1c8e0f4f1d2c8d9e0a4b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0 (local image 9a1b2c3d4e5f)",
		Topic:     "refresh:docker.io/library/nginx:1.25",
		Image:     "9a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
		Reference: "docker.io/library/nginx:1.25", Digest: "sha256:6f0b3a5ee1c8e0f4f1d2c8d9e0a4b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0"}}},
	{"image_pulled", report.JobRefresh, []report.Event{{Kind: report.EventImagePulled, Severity: report.SeverityLow,
		Message:   "pulled quay.io/prometheus/node-exporter:v1.8.2 (sha256:4cb2b9019f1c); the previous image 3c1e5d7f9b2a is kept",
		Topic:     "refresh:quay.io/prometheus/node-exporter:v1.8.2",
		Image:     "b7d3e5f1a9c2b7d3e5f1a9c2b7d3e5f1a9c2b7d3e5f1a9c2b7d3e5f1a9c2b7d3",
		Reference: "quay.io/prometheus/node-exporter:v1.8.2", Digest: "sha256:4cb2b9019f1c"}}},
	{"newer_version", report.JobRefresh, []report.Event{{Kind: report.EventNewerVersion, Severity: report.SeverityNormal,
		Message:   "docker.io/library/postgres:16.3: newer version 16.4 available (patch updates)",
		Topic:     "refresh-newer:docker.io/library/postgres:16.3",
		Image:     "0e2f4a6c8e0f2a4c6e8a0c2e4f6a8c0e2f4a6c8e0f2a4c6e8a0c2e4f6a8c0e2f",
		Reference: "docker.io/library/postgres:16.3", Newer: "docker.io/library/postgres:16.4"}}},
	{"signature_rejected", report.JobVerify, []report.Event{{Kind: report.EventSignatureRejected, Severity: report.SeverityCritical,
		Message:   "registry.example.com/team/api:2.4 (image 51a2b3c4d5e6) is rejected by the trust policy: A signature was required, but no signature exists",
		Topic:     "verify:registry.example.com/team/api:2.4",
		Image:     "51a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80",
		Reference: "registry.example.com/team/api:2.4"}}},
	{"signature_recovered", report.JobVerify, []report.Event{{Kind: report.EventSignatureRecovered, Severity: report.SeverityNormal,
		Message:   "registry.example.com/team/web:3.1 (image 77f0e1d2c3b4) passes the trust policy again (signed by release@example.com)",
		Topic:     "verify:registry.example.com/team/web:3.1",
		Image:     "77f0e1d2c3b4a5968778695a4b3c2d1e0f77f0e1d2c3b4a5968778695a4b3c2d",
		Reference: "registry.example.com/team/web:3.1"}}},
	{"image_untagged", report.JobVerify, []report.Event{{Kind: report.EventImageUntagged, Severity: report.SeverityNormal,
		Message:   "untagged registry.example.com/team/worker:1.9 (image 8c9d0e1f2a3b): it fails the trust policy",
		Topic:     "verify:registry.example.com/team/worker:1.9",
		Image:     "8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5",
		Reference: "registry.example.com/team/worker:1.9"}}},
	{"image_removed", report.JobPrune, []report.Event{{Kind: report.EventImageRemoved, Severity: report.SeverityLow,
		Message:   "removed image 2b4d6f8a0c2e [docker.io/library/golang:1.21] (lru, 852 MB)",
		Image:     "2b4d6f8a0c2e4a6c8e0a2c4e6a8c0e2a4c6e8a0c2e4a6c8e0a2c4e6a8c0e2a4c",
		Reference: "docker.io/library/golang:1.21", Bytes: 852_000_000}}},
	{"layer_corrupted", report.JobVerify, []report.Event{{Kind: report.EventLayerCorrupted, Severity: report.SeverityCritical,
		Message: "layer 6e5d4c3b2a19 is corrupted (digest mismatch: 1 file differs); images: [4f3e2d1c0b9a]",
		Topic:   "verify-layer:6e5d4c3b2a19f8e7d6c5b4a392817f6e5d4c3b2a19f8e7d6c5b4a392817f6e5d",
		Image:   "4f3e2d1c0b9a8f7e6d5c4b3a29180f4f3e2d1c0b9a8f7e6d5c4b3a29180f4f3e",
		Digest:  "sha256:6e5d4c3b2a19f8e7d6c5b4a392817f6e5d4c3b2a19f8e7d6c5b4a392817f6e5d"}}},
	{"layer_removed", report.JobPrune, []report.Event{{Kind: report.EventLayerRemoved, Severity: report.SeverityLow,
		Message: "removed orphan layer 1a2b3c4d5e6f (48.2MiB)", Bytes: 50_541_363}}},
	{"volume_removed", report.JobVolumes, []report.Event{{Kind: report.EventVolumeRemoved, Severity: report.SeverityLow,
		Message: "Removed unused volume 3f9e8d7c6b5a (1.2GiB)", Topic: "volumes",
		Volume: "3f9e8d7c6b5a49382716f5e4d3c2b1a03f9e8d7c6b5a49382716f5e4d3c2b1a0", Bytes: 1_288_490_189}}},
	{"quota_exceeded", report.JobPrune, []report.Event{{Kind: report.EventQuotaExceeded, Severity: report.SeverityNormal,
		Topic:   "prune-quota",
		Message: "storage over its high watermark: 3.1GiB to free (usage 18.6GiB, limit 20GiB)", Bytes: 3_328_599_655}}},
	{"prune_several", report.JobPrune, []report.Event{
		{Kind: report.EventImageRemoved, Severity: report.SeverityLow,
			Message: "removed image 5c6d7e8f9a0b [docker.io/library/node:18] (lru, 1.1 GB)",
			Image:   "5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f", Reference: "docker.io/library/node:18", Bytes: 1_100_000_000},
		{Kind: report.EventImageRemoved, Severity: report.SeverityLow,
			Message: "removed image 9d8c7b6a5f4e [] (dangling, 213 MB)",
			Image:   "9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a", Bytes: 213_000_000},
		{Kind: report.EventLayerRemoved, Severity: report.SeverityLow,
			Message: "removed orphan layer 7e6f5a4b3c2d (12.4MiB)", Bytes: 13_002_342},
	}},
}

// urgencyName is dunst's name of a finding severity's urgency.
var urgencyName = map[report.Severity]string{
	report.SeverityLow: "LOW", report.SeverityNormal: "NORMAL", report.SeverityCritical: "CRITICAL"}

// screenshotDir is where the screenshots go: $STOWAGE_SCREENSHOTS, else
// the test's temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("STOWAGE_SCREENSHOTS"); d != "" {
		return d
	}
	return t.TempDir()
}

func newNotifier(t *testing.T, d *testenv.Desktop) *notify.Notifier {
	t.Helper()
	conn, err := dbus.Connect(d.Bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	db, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, err := notify.New(notify.Options{Conn: conn, State: db, Events: testjobs.Registry().EventKinds(),
		Policy: policy.Notify{Desktop: true, MinUrgency: policy.UrgencyLow}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEveryKindOnDunst sends one run of every kind of finding through the
// real Notifier to dunst and checks what dunst shows: summary, body,
// urgency, icon; then that the screen shows it, and keeps a cropped
// screenshot of each.
func TestEveryKindOnDunst(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range everyKind {
		for _, ev := range c.events {
			covered[ev.Kind] = true
		}
	}
	for _, k := range testjobs.Registry().EventKinds() {
		if !covered[k.Kind] {
			t.Errorf("event kind %s has no case here", k.Kind)
		}
	}

	d := testenv.StartDesktop(t)
	empty := d.Capture(t)
	n := newNotifier(t, d)
	out := screenshotDir(t)
	ctx := context.Background()
	for i, c := range everyKind {
		t.Run(c.name, func(t *testing.T) {
			sent, err := n.NotifyRun(ctx, c.job, fmt.Sprintf("run-%d", i), c.events)
			if err != nil || sent == nil {
				t.Fatalf("NotifyRun: %v, %v", sent, err)
			}
			shown := d.NextShown(t, 10*time.Second)
			wantSummary := fmt.Sprintf("stowage %s: %d new findings", c.job, len(c.events))
			var lead report.Event // the most severe, the first of equals
			var lines []string
			for _, ev := range c.events {
				if lead.Kind == "" || policy.Urgency(ev.Severity).Level() > policy.Urgency(lead.Severity).Level() {
					lead = ev
				}
				lines = append(lines, ev.Message)
			}
			if len(c.events) == 1 {
				k, _ := testjobs.Registry().LookupEvent(lead.Kind)
				wantSummary = fmt.Sprintf("stowage %s: %s", c.job, k.Title)
			}
			if shown.ID != sent.ID || shown.AppName != "stowage" || shown.Summary != wantSummary ||
				shown.Body != strings.Join(lines, "\n") || shown.Urgency != urgencyName[lead.Severity] {
				t.Errorf("dunst shows %+v\nwant id %d, summary %q, body %q, urgency %s",
					shown, sent.ID, wantSummary, strings.Join(lines, "\n"), urgencyName[lead.Severity])
			}
			if !strings.HasSuffix(shown.IconPath, "/drive-harddisk.png") {
				t.Errorf("icon %q, want the theme's drive-harddisk", shown.IconPath)
			}

			d.WaitDisplayed(t, 1, 10*time.Second)
			shot := d.Capture(t)
			if px := testenv.DiffPixels(empty, shot); px < 2000 {
				t.Errorf("the screen differs from the empty one in %d pixels, want a notification's worth", px)
			}
			testenv.WritePNG(t, filepath.Join(out, c.name+".png"), testenv.Crop(shot, empty, 8))

			d.CloseAll(t)
			d.WaitDisplayed(t, 0, 10*time.Second)
			if h := d.History(t); len(h) == 0 || h[0].ID != int32(sent.ID) || h[0].Summary != wantSummary {
				t.Errorf("dunst's history %+v, want notification %d first", h, sent.ID)
			}
		})
	}
	t.Logf("screenshots in %s", out)
}

// TestUpdateInPlaceOnDunst: a later run's finding on the same topic
// replaces the notification on screen instead of adding one, and a finding
// already shown is not shown again.
func TestUpdateInPlaceOnDunst(t *testing.T) {
	d := testenv.StartDesktop(t)
	n := newNotifier(t, d)
	ctx := context.Background()
	ref := "docker.io/library/redis:7.2"
	drift := report.Event{Kind: report.EventDriftDetected, Severity: report.SeverityNormal,
		Message: ref + " now points to sha256:aa (local image 111111111111)", Topic: "refresh:" + ref,
		Image: "1111", Reference: ref, Digest: "sha256:aa"}
	pulled := report.Event{Kind: report.EventImagePulled, Severity: report.SeverityNormal,
		Message: "pulled " + ref + " (sha256:aa); the previous image 111111111111 is kept", Topic: "refresh:" + ref,
		Image: "2222", Reference: ref, Digest: "sha256:aa"}

	first, err := n.NotifyRun(ctx, report.JobRefresh, "r1", []report.Event{drift})
	if err != nil || first == nil {
		t.Fatalf("run 1: %v %v", first, err)
	}
	if s := d.NextShown(t, 10*time.Second); s.ID != first.ID {
		t.Fatalf("run 1 shown %+v, want id %d", s, first.ID)
	}
	again, err := n.NotifyRun(ctx, report.JobRefresh, "r2", []report.Event{drift})
	if err != nil || again != nil {
		t.Fatalf("run 2 (same finding): %v %v, want nothing sent", again, err)
	}
	second, err := n.NotifyRun(ctx, report.JobRefresh, "r3", []report.Event{pulled})
	if err != nil || second == nil {
		t.Fatalf("run 3: %v %v", second, err)
	}
	s := d.NextShown(t, 10*time.Second)
	if s.ID != first.ID || s.Summary != "stowage refresh: image pulled" || s.Body != pulled.Message {
		t.Errorf("run 3 shown %+v, want notification %d updated to the pull", s, first.ID)
	}
	d.WaitDisplayed(t, 1, 10*time.Second)
	if all := d.Shown(t); len(all) != 2 {
		t.Errorf("dunst showed %d displays, want 2 (run 2 sends nothing): %+v", len(all), all)
	}
}

// TestMarkupEscapedOnDunst: dunst reads bodies as markup (it advertises
// body-markup), so a finding's "<", ">" and "&" reach it escaped and are
// shown as text, not taken for tags.
func TestMarkupEscapedOnDunst(t *testing.T) {
	d := testenv.StartDesktop(t)
	n := newNotifier(t, d)
	ref := "registry.example.com/a&b:1"
	ev := report.Event{Kind: report.EventSignatureRejected, Severity: report.SeverityCritical,
		Message: ref + " is rejected: signed by <release@example.com> & not trusted", Topic: "verify:" + ref,
		Image: "3333", Reference: ref}
	sent, err := n.NotifyRun(context.Background(), report.JobVerify, "r1", []report.Event{ev})
	if err != nil || sent == nil {
		t.Fatalf("NotifyRun: %v %v", sent, err)
	}
	s := d.NextShown(t, 10*time.Second)
	want := "registry.example.com/a&amp;b:1 is rejected: signed by &lt;release@example.com&gt; &amp; not trusted"
	if s.ID != sent.ID || s.Body != want {
		t.Fatalf("dunst got body %q, want the escaped %q", s.Body, want)
	}
}
