package integrity

import (
	"context"
	"testing"
	"time"
)

// fakeClock advances only when the throttle sleeps.
type fakeClock struct {
	now    time.Time
	slept  time.Duration
	sleeps int
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	c.slept += d
	c.sleeps++
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func TestThrottle(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		rate      int64
		reads     []int
		idle      time.Duration // time passing between reads (the disk's own speed)
		wantSlept time.Duration
	}{
		{"unlimited", 0, []int{1 << 20, 1 << 20}, 0, 0},
		// 4 MiB at 1 MiB/s take 4 s.
		{"capped", 1 << 20, []int{1 << 20, 1 << 20, 1 << 20, 1 << 20}, 0, 4 * time.Second},
		// A disk slower than the cap is never slowed further.
		{"slow source", 1 << 20, []int{1 << 19, 1 << 19, 1 << 19}, time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{now: time.Unix(1_700_000_000, 0)}
			th := NewThrottle(tt.rate, c)
			for _, n := range tt.reads {
				c.now = c.now.Add(tt.idle)
				if err := th.Wait(ctx, n); err != nil {
					t.Fatal(err)
				}
			}
			if c.slept != tt.wantSlept {
				t.Errorf("slept %v, want %v", c.slept, tt.wantSlept)
			}
		})
	}
}

func TestThrottleCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	th := NewThrottle(1, nil) // 1 byte/s: the wall clock would sleep an hour
	start := time.Now()
	if err := th.Wait(ctx, 3600); err == nil {
		t.Fatal("Wait ignored a cancelled context")
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Wait slept despite the cancelled context")
	}
}

func TestNilThrottle(t *testing.T) {
	var th *Throttle
	if err := th.Wait(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
}
