package refresh

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestRefreshInvalidDigest: a Docker-Content-Digest that is not a digest
// (issue 12 item 10: "sha256:ZZZZ-not-a-digest") is an error for
// that reference, never drift, and never enters the history. A real
// registry cannot send one, so a fault proxy in front of it rewrites the
// header; every other answer is the real registry's.
func TestRefreshInvalidDigest(t *testing.T) {
	const garbage = "sha256:ZZZZ-not-a-digest"
	w := newWorld(t, testenv.RegistryOptions{})
	proxy := testenv.StartFaultProxy(t, w.reg.Addr)
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry]]\nlocation = %q\ninsecure = true\n", w.reg.Addr, proxy.Addr))
	bad, fine := proxy.Addr+"/garbled/app:1", proxy.Addr+"/fine/app:1"
	w.push("garbled/app:1")
	w.push("fine/app:1")
	w.pull(bad)
	w.pull(fine)

	proxy.SetFaults(testenv.Fault{Match: "/v2/garbled/app/manifests/", Digest: garbage})
	for _, dry := range []bool{true, false} {
		rep := w.run(defaultRefresh(), nil, dry)
		expect(t, rep, map[string]Status{bad: StatusError, fine: StatusCurrent})
		r := byRef(rep)[bad]
		if !strings.Contains(r.Error, "invalid digest") || !strings.Contains(r.Error, garbage) {
			t.Errorf("dry run %t: error %q does not say the digest %q is invalid", dry, r.Error, garbage)
		}
		if r.RemoteDigest != "" || r.New {
			t.Errorf("dry run %t: remote digest %q new %t, want none", dry, r.RemoteDigest, r.New)
		}
		if len(rep.Events) != 0 || rep.Metrics["drifted"] != 0 || rep.Metrics["errors"] != 1 {
			t.Errorf("dry run %t: events %+v metrics %v", dry, rep.Events, rep.Metrics)
		}
	}
	recs, err := History(w.db, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if rec.Reference == bad {
			t.Errorf("history holds the reference with the invalid digest: %+v", rec)
		}
		for _, s := range rec.Seen {
			if s.Digest == garbage {
				t.Errorf("history stored the invalid digest: %+v", rec)
			}
		}
		for k, v := range rec.Lists {
			if strings.Contains(k, garbage) || v == garbage {
				t.Errorf("history list cache stored the invalid digest: %+v", rec)
			}
		}
	}
	if len(recs) != 1 || recs[0].Reference != fine {
		t.Errorf("history: %+v, want the fine reference only", recs)
	}
}
