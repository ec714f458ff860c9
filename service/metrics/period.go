package metrics

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Period looks at the slots of the year after from, at most periodSlots.
const (
	periodSpan  = 366 * 24 * time.Hour
	periodSlots = 20000
)

// Period is the longest interval between two consecutive slots of s in the
// year after from (at most periodSlots slots; 0 when s has fewer than two).
// For a regular schedule it is the period ("@daily": 24h); for an irregular
// one the longest gap ("0 3 * * 1-5": 72h, Friday to Monday), so an alert on
// "not run within twice the period" never fires over a weekend the schedule
// skips.
func Period(s cron.Schedule, from time.Time) time.Duration {
	if s == nil {
		return 0
	}
	first := s.Next(from)
	if first.IsZero() {
		return 0
	}
	var longest time.Duration
	prev := first
	for range periodSlots {
		next := s.Next(prev)
		if next.IsZero() {
			break
		}
		longest = max(longest, next.Sub(prev))
		prev = next
		if prev.Sub(first) >= periodSpan {
			break
		}
	}
	return longest
}
