package prune

import (
	"fmt"
	"testing"

	"github.com/stowage/stowage/policy"
)

// BenchmarkPlan plans on synthetic snapshots of growing size (images, 3
// layers each, one container per 5 images) under maximal pressure, so the
// whole LRU walk runs. ns/op and allocs/op should grow linearly.
func BenchmarkPlan(b *testing.B) {
	for _, n := range []int{1250, 2500, 5000, 10000} {
		s := synthetic(n, 3, 5, 7)
		b.Run(fmt.Sprintf("images=%d/layers=%d/containers=%d", len(s.Images), len(s.Layers)-len(s.Containers), len(s.Containers)), func(b *testing.B) {
			pol := basePolicy()
			pol.Quota = policy.Amount{Bytes: 1}
			pol.KeepLast = 1
			pol.Keep = []string{"registry.example/r1/*"}
			b.ReportAllocs()
			for b.Loop() {
				p := Build(&Input{Snapshot: s, Policy: pol, Now: t0})
				if len(p.Removals) == 0 {
					b.Fatal("empty plan")
				}
			}
		})
	}
}
