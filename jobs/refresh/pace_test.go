package refresh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage/test/testenv"
)

func TestTakeSlot(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	for _, c := range []struct {
		name            string
		next, now       time.Time
		interval        time.Duration
		slot, wantAfter time.Time
	}{
		{"first request of a run goes now", time.Time{}, t0, 50 * ms, t0, t0.Add(50 * ms)},
		{"a request right after waits a full interval", t0.Add(50 * ms), t0.Add(ms), 50 * ms, t0.Add(50 * ms), t0.Add(100 * ms)},
		{"queued requests line up one interval apart", t0.Add(200 * ms), t0, 50 * ms, t0.Add(200 * ms), t0.Add(250 * ms)},
		{"a slot exactly now is taken as is", t0, t0, 100 * ms, t0, t0.Add(100 * ms)},
		// A quiet host does not bank slots: after a pause the next request
		// goes now, and the one after it an interval later, not at once.
		{"slots do not accumulate while idle", t0, t0.Add(time.Second), 100 * ms, t0.Add(time.Second), t0.Add(1100 * ms)},
	} {
		slot, after := takeSlot(c.next, c.now, c.interval)
		if !slot.Equal(c.slot) || !after.Equal(c.wantAfter) {
			t.Errorf("%s: takeSlot = %s, %s; want %s, %s", c.name,
				slot.Sub(t0), after.Sub(t0), c.slot.Sub(t0), c.wantAfter.Sub(t0))
		}
	}
}

// A request waiting for a far slot gives up when the run is cancelled.
func TestWaitSlotCancelled(t *testing.T) {
	h := &host{nextSlot: time.Now().Add(time.Hour)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.waitSlot(ctx, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitSlot = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waitSlot returned %s after the cancellation", d)
	}
}

// [refresh] rate paces the requests to one registry host, as the registry
// sees them: with rate = 20 every request (the ping and 12 HEADs) arrives
// at least ~50 ms after the previous one; with rate = 0 the same run goes
// out per_registry at a time. The proxy holds each manifest answer back for
// 60 ms (a slow registry), so requests overlap unless paced.
func TestRefreshRatePacing(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr))
	const tags = 12
	w.builder.Import(t, "localhost/pace:latest", map[string]string{"content": fmt.Sprintf("pace %d", time.Now().UnixNano())})
	want := map[string]Status{}
	for i := range tags {
		w.pushImage("localhost/pace:latest", fmt.Sprintf("%s/pace/app:t%02d", w.reg.Addr, i))
		ref := fmt.Sprintf("%s/pace/app:t%02d", proxy.Addr, i)
		w.pull(ref)
		want[ref] = StatusCurrent
	}
	const delay = 60 * time.Millisecond
	proxy.SetFaults(testenv.Fault{Match: "/manifests/", Delay: delay})

	// arrivals runs the job under rate and returns when the proxy got each
	// request, in order, and the most it served at once.
	arrivals := func(rate int) ([]testenv.ProxyRequest, int) {
		t.Helper()
		proxy.Reset()
		p := defaultRefresh()
		p.Concurrency, p.PerRegistry, p.Rate = 8, 4, rate
		expect(t, w.run(p, nil, false), want)
		reqs := proxy.Requests("/v2/")
		slices.SortFunc(reqs, func(a, b testenv.ProxyRequest) int { return a.Arrived.Compare(b.Arrived) })
		var heads int
		for _, r := range reqs {
			if r.Method == http.MethodHead {
				heads++
			}
		}
		if heads != tags || reqs[0].Path != "/v2/" {
			t.Fatalf("rate %d: want the ping then %d HEADs, proxy saw %v", rate, tags, reqs)
		}
		return reqs, proxy.MaxInFlight()
	}

	const rate = 20
	interval := time.Second / rate
	paced, _ := arrivals(rate)
	// Request i cannot start before its slot, i intervals after the first
	// one's: measured from the first arrival, with a little slack for the
	// first request's own way to the proxy. (Gaps between neighbours are not
	// asserted: a request delayed on a busy machine shortens the next gap
	// without breaking the pace.)
	slack := interval / 2
	for i := 1; i < len(paced); i++ {
		if at := paced[i].Arrived.Sub(paced[0].Arrived); at < time.Duration(i)*interval-slack {
			t.Errorf("rate %d: request %d (%s) arrived %s after the first, want >= %s", rate, i, paced[i], at, time.Duration(i)*interval-slack)
		}
	}
	// Paced, not slower: the slots are one interval apart, no more.
	span := paced[len(paced)-1].Arrived.Sub(paced[0].Arrived)
	floor := time.Duration(len(paced)-1) * interval
	if span > 2*floor {
		t.Errorf("rate %d: %d requests took %s to arrive, want about %s", rate, len(paced), span, floor)
	}
	t.Logf("rate %d: %d requests arrived over %s (slots over %s)", rate, len(paced), span, floor)

	unpaced, inflight := arrivals(0)
	uspan := unpaced[len(unpaced)-1].Arrived.Sub(unpaced[0].Arrived)
	if inflight < 2 {
		t.Errorf("rate 0: at most %d request in flight, want per_registry's 4 overlapping", inflight)
	}
	if uspan > floor*3/4 {
		t.Errorf("rate 0: %d requests arrived over %s, want well under the paced %s", len(unpaced), uspan, floor)
	}
	t.Logf("rate 0: %d requests arrived over %s, %d in flight at most", len(unpaced), uspan, inflight)
}
