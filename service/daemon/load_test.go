package daemon

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stowage/stowage/service/client"
	"github.com/stowage/stowage/test/testjobs"
)

// loadDuration is STOWAGE_LOAD_DURATION (e.g. "5s" while iterating),
// default 30s, the duration the issue asks for.
func loadDuration(t *testing.T) time.Duration {
	if v := os.Getenv("STOWAGE_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("STOWAGE_LOAD_DURATION: %v", err)
		}
		return d
	}
	return 30 * time.Second
}

// TestControlLoad: 200 concurrent clients on the control socket while jobs
// run through real worker processes; no request fails, and goroutines and
// heap do not grow between a warm-up round and the full round.
func TestControlLoad(t *testing.T) {
	const clients = 200
	h := start(t, shWorker("sleep 0.2; "+reportScript), basePolicy, nil)
	h.c.Close() // its idle connection would count as a client

	round := func(d time.Duration) (requests int64) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var n, failures atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		fail := func(err error) {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
		// Keep jobs running: trigger each job whenever it is free.
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(h.sock, nil)
			defer c.Close()
			for ctx.Err() == nil {
				for _, job := range testjobs.Registry().Names() {
					if _, err := c.Trigger(ctx, job, false); err != nil && !errors.Is(err, client.ErrBusy) && ctx.Err() == nil {
						fail(err)
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := client.New(h.sock, nil)
				defer c.Close()
				for k := 0; ctx.Err() == nil; k++ {
					var err error
					switch {
					case k%50 == 49:
						_, err = c.History(ctx, testjobs.Registry().Names()[i%4], 5)
					case k%20 == 19:
						_, err = c.Metrics(ctx)
					case k%2 == 1:
						_, err = c.Jobs(ctx)
					default:
						_, err = c.Status(ctx)
					}
					if err != nil {
						if ctx.Err() != nil {
							return // the round ended mid-request
						}
						fail(err)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		if f := failures.Load(); f > 0 {
			t.Fatalf("%d failed requests; first: %v", f, firstErr.Load())
		}
		return n.Load()
	}
	settle := func() (goroutines int, heap uint64) {
		waitFor(t, "jobs to finish and clients to disconnect", func() bool {
			return !h.d.sched.Busy() && h.d.server.Idle(0)
		})
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}

	round(2 * time.Second)
	g0, h0 := settle()
	d := loadDuration(t)
	n := round(d)
	g1, h1 := settle()
	hist, err := h.d.History("", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests in %v (%.0f/s), %d runs recorded; goroutines %d -> %d, heap %d KiB -> %d KiB",
		n, d, float64(n)/d.Seconds(), len(hist), g0, g1, h0>>10, h1>>10)
	if len(hist) < 4 {
		t.Fatalf("only %d runs while under load", len(hist))
	}
	if g1 > g0+5 {
		t.Fatalf("goroutines grew: %d -> %d", g0, g1)
	}
	if h1 > h0+h0/4+4<<20 {
		t.Fatalf("heap grew: %d -> %d bytes", h0, h1)
	}
}
