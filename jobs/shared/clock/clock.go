// Package clock is stowage's one time source abstraction: the scheduler
// waits on it, the integrity scan paces its reads with it, and tests replace
// it with a fake (time is one of the few things faked). Code that only reads
// the time takes a Clock too (jobenv.Env.Clock, the jobs' options); inside a
// package a Clock's Now method value may stand for it.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and waits for it.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed.
	After(d time.Duration) <-chan time.Time
}

type real struct{}

func (real) Now() time.Time                         { return time.Now() }
func (real) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Real is the system clock.
var Real Clock = real{}

// At is a clock stopped at t: a run told what time it is (prune --now)
// reads t; waiting still takes real time.
func At(t time.Time) Clock { return stopped(t) }

type stopped time.Time

func (s stopped) Now() time.Time                       { return time.Time(s) }
func (stopped) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sleep waits for d on c, or until ctx is done (then it returns ctx's
// error).
func Sleep(ctx context.Context, c Clock, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.After(d):
		return nil
	}
}
