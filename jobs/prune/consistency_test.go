package prune

import (
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/layergraph"
)

func TestConsistency(t *testing.T) {
	old := t0.Add(-2 * time.Hour)
	two := []img{
		{id: "a", names: []string{"localhost/a:1"}, layers: []string{"la1", "la2"}, size: 10, pulled: old},
		{id: "b", names: []string{"localhost/b:1"}, layers: []string{"lb"}, base: "la1", size: 10, pulled: old},
	}
	// lost drops the image records, as an empty images.json does.
	lost := func(s *layergraph.Snapshot) { s.Images = nil }
	cases := []struct {
		name   string
		imgs   []img
		ctrs   map[string]string
		extra  []layergraph.Layer
		mutate func(*layergraph.Snapshot)
		prev   *Counts
		want   []string // substrings, one per problem; nil = consistent
	}{
		{name: "healthy", imgs: two, ctrs: map[string]string{"c1": "a"}},
		{name: "empty store", imgs: nil},
		{name: "orphans next to images are fine", imgs: two, extra: []layergraph.Layer{{ID: "o1", Created: old}, {ID: "o2", Parent: "o1", Created: old}}},
		{name: "rootfs container without image", imgs: two, mutate: func(s *layergraph.Snapshot) {
			s.Layers = append(s.Layers, layergraph.Layer{ID: "rootfs", Created: old})
			s.Containers = append(s.Containers, layergraph.Container{ID: "r1", LayerID: "rootfs"})
		}},
		{name: "images.json empty with containers", imgs: two, ctrs: map[string]string{"c1": "a"}, mutate: lost,
			want: []string{"use images the store does not list", "lists no images but holds 3 image layer"}},
		{name: "images.json empty, no containers", imgs: two, mutate: lost,
			want: []string{"lists no images but holds 3 image layer"}},
		{name: "images.json empty, layers young: maybe a first pull", imgs: []img{{id: "a", layers: []string{"l1", "l2"}, pulled: t0.Add(-time.Minute)}}, mutate: lost},
		{name: "undated layers and no images", imgs: []img{{id: "a", layers: []string{"l1"}}}, mutate: lost,
			want: []string{"lists no images"}},
		{name: "container on a layer no image reaches", imgs: two, ctrs: map[string]string{"c1": "a"}, mutate: func(s *layergraph.Snapshot) {
			s.Images[0].TopLayer = "la1" // a's record lost its top layer
		}, want: []string{"sit on layers no image reaches"}},
		{name: "images fell to zero since last run", imgs: []img{{id: "a", layers: []string{"l1"}, pulled: t0.Add(-time.Minute)}}, mutate: lost,
			prev: &Counts{Images: 1, ImageLayers: 1, At: old}, want: []string{"images fell from 1 to 0"}},
		{name: "images collapsed by far", imgs: two, prev: &Counts{Images: 40, ImageLayers: 5, At: old},
			want: []string{"images fell from 40 to 2"}},
		{name: "images and layers removed together", imgs: two, prev: &Counts{Images: 40, ImageLayers: 80, At: old}},
		{name: "a few images fewer", imgs: two, prev: &Counts{Images: 3, ImageLayers: 4, At: old}},
		{name: "everything removed", imgs: nil, prev: &Counts{Images: 10, ImageLayers: 30, At: old}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := build(tc.imgs, tc.ctrs, tc.extra...)
			if tc.mutate != nil {
				tc.mutate(s)
			}
			got := Consistency(s, tc.prev, t0)
			if len(got) != len(tc.want) {
				t.Fatalf("problems = %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want ~%q", i, got[i], w)
				}
			}
			// The planner removes nothing from an inconsistent store.
			in := &Input{Snapshot: s, Policy: basePolicy(), Now: t0.Add(48 * time.Hour), Previous: tc.prev}
			in.Policy.MinAge.Duration = 0
			p := Build(in)
			if len(tc.want) > 0 && (len(p.Removals) != 0 || len(p.Refused) == 0) {
				t.Errorf("inconsistent store planned %v (refused %q)", removedIDs(p), p.Refused)
			}
		})
	}
}
