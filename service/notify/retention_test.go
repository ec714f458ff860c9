package notify

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

func TestExpiredSeen(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	seen := map[string]time.Time{
		"seen/fresh":   now,
		"seen/edge":    now.Add(-SeenRetention),
		"seen/old":     now.Add(-SeenRetention - time.Second),
		"seen/ancient": {},
	}
	if got, want := expiredSeen(seen, now, SeenRetention), []string{"seen/ancient", "seen/old"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("expiredSeen = %v, want %v", got, want)
	}
}

// TestSeenRetention: a finding reported by every run stays known however
// old; one no run reported for SeenRetention is forgotten and, should it
// come back, shown again.
func TestSeenRetention(t *testing.T) {
	ctx := context.Background()
	bus := testenv.StartDBus(t, "session")
	srv := &server{}
	startServer(t, bus, srv)
	n := newNotifier(t, bus, t.TempDir(), policy.Notify{Desktop: true, MinUrgency: policy.UrgencyNormal})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	n.now = func() time.Time { return now }
	steady, gone := drift("steady:1", "sha256:1"), drift("gone:1", "sha256:2")

	if sent, err := n.NotifyRun(ctx, "refresh", "r1", []report.Event{steady, gone}); err != nil || sent == nil {
		t.Fatalf("run 1: %v %v", sent, err)
	}
	// Monthly runs keep reporting steady only.
	for i := 0; i < 4; i++ {
		now = now.Add(30 * 24 * time.Hour)
		if sent, err := n.NotifyRun(ctx, "refresh", "r", []report.Event{steady}); err != nil || sent != nil {
			t.Fatalf("monthly run %d: %+v %v (steady must not be shown again)", i, sent, err)
		}
	}
	// 120 days later gone returns: shown again; steady still not.
	sent, err := n.NotifyRun(ctx, "refresh", "r6", []report.Event{steady, gone})
	if err != nil || sent == nil || sent.Findings != 1 || sent.Topic != "drift:gone:1" {
		t.Fatalf("returning finding: %+v %v", sent, err)
	}
}
