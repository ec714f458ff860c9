package refresh

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/policy"
	"github.com/stowage/stowage/test/testenv"
)

func TestRefreshFaults(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr))
	repos := []string{"busy", "broken", "slow", "nodigest", "fine"}
	ref := map[string]string{}
	for _, r := range repos {
		w.push(r + "/app:1")
		ref[r] = proxy.Addr + "/" + r + "/app:1"
		w.pull(ref[r])
	}

	proxy.SetFaults(
		testenv.Fault{Match: "/v2/busy/app/manifests/", Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 2},
		testenv.Fault{Match: "/v2/broken/app/manifests/", Status: http.StatusInternalServerError},
		testenv.Fault{Match: "/v2/slow/app/manifests/", Delay: 5 * time.Second},
		testenv.Fault{Match: "/v2/nodigest/app/manifests/", StripDigest: true},
	)
	proxy.Reset()
	p := defaultRefresh()
	p.Timeout = policy.Duration{Duration: time.Second}
	rep := w.run(p, nil, false)
	expect(t, rep, map[string]Status{
		ref["busy"]: StatusCurrent, ref["broken"]: StatusError, ref["slow"]: StatusError,
		ref["nodigest"]: StatusCurrent, ref["fine"]: StatusCurrent,
	})
	res := byRef(rep)
	if e := res[ref["broken"]].Error; !strings.Contains(e, "500") {
		t.Errorf("broken: error %q does not name the HTTP status", e)
	}
	if e := res[ref["slow"]].Error; !strings.Contains(e, ErrTimeout.Error()) {
		t.Errorf("slow: error %q is not a timeout", e)
	}

	// 429: retried after Retry-After, never earlier.
	busy := proxy.Requests("/v2/busy/app/manifests/")
	if len(busy) != 3 || busy[0].Status != 429 || busy[1].Status != 429 || busy[2].Status != 200 {
		t.Fatalf("busy requests: %v", busy)
	}
	for i := 1; i < len(busy); i++ {
		if gap := busy[i].At.Sub(busy[i-1].At); gap < 900*time.Millisecond {
			t.Errorf("retry %d came %s after a 429 with Retry-After: 1", i, gap)
		}
	}
	if c := rep.Registries[proxy.Addr]; c.RateLimited != 2 {
		t.Errorf("rate_limited = %d, want 2", c.RateLimited)
	}
	// Missing Docker-Content-Digest: one GET, digest computed from the body.
	var heads, gets int
	for _, r := range proxy.Requests("/v2/nodigest/app/manifests/") {
		switch r.Method {
		case http.MethodHead:
			heads++
		case http.MethodGet:
			gets++
		}
	}
	if heads != 1 || gets != 1 || rep.GetRequests != 1 {
		t.Errorf("nodigest: %d HEAD %d GET at the proxy, %d GETs counted; want 1, 1, 1", heads, gets, rep.GetRequests)
	}
	// The fine tag cost one HEAD.
	if n := len(proxy.Requests("/v2/fine/app/manifests/")); n != 1 {
		t.Errorf("fine: %d requests", n)
	}

	// per_registry bounds the requests in flight to one registry.
	proxy.SetFaults(testenv.Fault{Match: "/manifests/", Delay: 300 * time.Millisecond})
	proxy.Reset()
	p.Concurrency, p.PerRegistry = 8, 2
	rep = w.run(p, nil, false)
	if n := proxy.MaxInFlight(); n != 2 {
		t.Errorf("per_registry 2: %d requests in flight at most, want 2", n)
	}
	expect(t, rep, map[string]Status{ref["fine"]: StatusCurrent, ref["busy"]: StatusCurrent})

	// A per-run budget: once spent (pings included), nothing more is sent.
	proxy.SetFaults()
	proxy.Reset()
	p.Budget = 3
	p.Concurrency, p.PerRegistry = 1, 1
	rep = w.run(p, nil, false)
	c := rep.Registries[proxy.Addr]
	exhausted := 0
	for _, r := range rep.Results {
		if strings.Contains(r.Error, ErrBudget.Error()) {
			exhausted++
		}
	}
	if sent := len(proxy.Requests("/v2/")); c.total() != 3 || sent > 3 || c.Head < 1 || exhausted != len(repos)-c.Head {
		t.Errorf("budget 3: counted %+v, proxy saw %d, %d results out of budget: %+v", c, sent, exhausted, rep.Results)
	}
}
