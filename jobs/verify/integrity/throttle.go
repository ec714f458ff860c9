package integrity

import (
	"context"
	"time"
)

// Clock is the time source of the rate limiter; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done.
	Sleep(ctx context.Context, d time.Duration) error
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Throttle paces reads to at most rate bytes per second averaged since it
// was made, so a long scan stays IO-friendly without bursts above the cap
// lasting longer than one read. A zero Rate disables it.
type Throttle struct {
	rate  int64
	clock Clock
	start time.Time
	total int64
}

// NewThrottle returns a limiter for rate bytes/s (0 = unlimited); clock nil
// means the wall clock.
func NewThrottle(rate int64, clock Clock) *Throttle {
	if clock == nil {
		clock = realClock{}
	}
	return &Throttle{rate: rate, clock: clock, start: clock.Now()}
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
		return t.clock.Sleep(ctx, d)
	}
	return nil
}
