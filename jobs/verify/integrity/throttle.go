package integrity

import (
	"context"
	"time"

	"github.com/stowage/stowage/jobs/shared/clock"
)

// Throttle paces reads to at most rate bytes per second averaged since it
// was made, so a long scan stays IO-friendly without bursts above the cap
// lasting longer than one read. A zero Rate disables it.
type Throttle struct {
	rate  int64
	clock clock.Clock
	start time.Time
	total int64
}

// NewThrottle returns a limiter for rate bytes/s (0 = unlimited); clock nil
// means the wall clock.
func NewThrottle(rate int64, c clock.Clock) *Throttle {
	if c == nil {
		c = clock.Real
	}
	return &Throttle{rate: rate, clock: c, start: c.Now()}
}

// Wait accounts n bytes just read and sleeps until the average rate is back
// under the cap.
func (t *Throttle) Wait(ctx context.Context, n int) error {
	if t == nil || t.rate <= 0 || n <= 0 {
		return nil
	}
	now := t.clock.Now()
	t.total += int64(n)
	due := t.start.Add(time.Duration(float64(t.total) / float64(t.rate) * float64(time.Second)))
	if d := due.Sub(now); d > 0 {
		return clock.Sleep(ctx, t.clock, d)
	}
	return nil
}
