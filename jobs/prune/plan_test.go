package prune

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/policy"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// snap builds a snapshot: each image spec is "id:parentLayer:size:ageDays:names...".
type img struct {
	id      string
	names   []string
	layers  []string // own layers, bottom first; the first's parent is base
	base    string   // parent layer of the first own layer ("" = none)
	size    int64    // per own layer
	pulled  time.Time
	created time.Time
	ro      bool
}

func build(imgs []img, containers map[string]string, extra ...layergraph.Layer) *layergraph.Snapshot {
	s := &layergraph.Snapshot{Taken: t0, FS: layergraph.Filesystem{SizeBytes: 1 << 40, FreeBytes: 1 << 39}}
	seen := map[string]bool{}
	for _, im := range imgs {
		parent := im.base
		for _, l := range im.layers {
			if !seen[l] {
				seen[l] = true
				s.Layers = append(s.Layers, layergraph.Layer{ID: l, Parent: parent, UncompressedSize: im.size, Created: im.pulled, ReadOnly: im.ro})
			}
			parent = l
		}
		s.Images = append(s.Images, layergraph.Image{ID: im.id, Names: im.names, TopLayer: parent, BigDataBytes: 10, Created: im.created, ReadOnly: im.ro})
	}
	s.Layers = append(s.Layers, extra...)
	for cid, imageID := range containers {
		var top string
		for _, im := range s.Images {
			if im.ID == imageID {
				top = im.TopLayer
			}
		}
		s.Layers = append(s.Layers, layergraph.Layer{ID: "cl-" + cid, Parent: top, Created: t0})
		s.Containers = append(s.Containers, layergraph.Container{ID: cid, ImageID: imageID, LayerID: "cl-" + cid})
	}
	return s
}

func basePolicy() policy.Prune {
	return policy.Prune{
		Enabled: true, HighWatermark: 90, LowWatermark: 80,
		MinAge: policy.Duration{Duration: 24 * time.Hour}, KeepLast: 0, Dangling: true, OrphanLayers: true,
	}
}

type matcher map[string]string // name or id → detail

func (m matcher) Match(id string, names []string) string {
	if d, ok := m[id]; ok {
		return d
	}
	for _, n := range names {
		if d, ok := m[n]; ok {
			return d
		}
	}
	return ""
}

func days(n int) time.Time { return t0.Add(-time.Duration(n) * 24 * time.Hour) }

func removedIDs(p *Plan) []string {
	var out []string
	for _, r := range p.Removals {
		out = append(out, string(r.Reason)+":"+r.ID)
	}
	return out
}

func keptReason(p *Plan, id string) Reason {
	for _, k := range p.Kept {
		if k.ID == id {
			return k.Reason
		}
	}
	return ""
}

func TestBuildRules(t *testing.T) {
	// Three independent 100-byte images, plus variations per case.
	three := []img{
		{id: "a", names: []string{"docker.io/library/a:1"}, layers: []string{"la"}, size: 100, pulled: days(30)},
		{id: "b", names: []string{"docker.io/library/b:1"}, layers: []string{"lb"}, size: 100, pulled: days(20)},
		{id: "c", names: []string{"docker.io/library/c:1"}, layers: []string{"lc"}, size: 100, pulled: days(10)},
	}
	cases := []struct {
		name       string
		imgs       []img
		containers map[string]string
		extra      []layergraph.Layer
		pol        func(*policy.Prune)
		in         func(*Input)
		want       []string          // reason:id, in order
		kept       map[string]Reason // id → reason
		planned    int64
	}{
		{
			name: "no pressure, no rules: nothing goes",
			imgs: three, want: nil,
			kept: map[string]Reason{"a": KeptNotNeeded, "b": KeptNotNeeded, "c": KeptNotNeeded},
		},
		{
			name: "dangling older than min_age goes, younger stays",
			imgs: append(slices.Clone(three),
				img{id: "d1", layers: []string{"ld1"}, size: 50, pulled: days(3)},
				img{id: "d2", layers: []string{"ld2"}, size: 50, pulled: t0.Add(-time.Hour)}),
			want:    []string{"dangling:d1"},
			kept:    map[string]Reason{"d2": KeptMinAge},
			planned: 60,
		},
		{
			name: "dangling off",
			imgs: append(slices.Clone(three), img{id: "d1", layers: []string{"ld1"}, size: 50, pulled: days(3)}),
			pol:  func(p *policy.Prune) { p.Dangling = false },
			kept: map[string]Reason{"d1": KeptNotNeeded},
		},
		{
			name: "intermediate (no names, child image) is not dangling",
			imgs: []img{
				{id: "base", layers: []string{"l1"}, size: 100, pulled: days(9)},
				{id: "child", names: []string{"localhost/child:latest"}, base: "l1", layers: []string{"l2"}, size: 100, pulled: days(9)},
			},
			kept: map[string]Reason{"base": KeptIntermediate, "child": KeptNotNeeded},
		},
		{
			// The rule df and images use (layergraph.Graph): only an image
			// whose top layer sits on this one's makes it intermediate, not
			// the middle layer of another image's chain. Removing it frees
			// its record; its layer stays under app's.
			name: "nameless image under another image's chain is dangling, as df says",
			imgs: []img{
				{id: "old", layers: []string{"b1"}, size: 100, pulled: days(9)},
				{id: "app", names: []string{"localhost/app:1"}, base: "b1", layers: []string{"a1", "a2"}, size: 100, pulled: days(9)},
			},
			want:    []string{"dangling:old"},
			kept:    map[string]Reason{"app": KeptNotNeeded},
			planned: 10,
		},
		{
			name:       "dangling in use stays",
			imgs:       []img{{id: "d1", layers: []string{"ld1"}, size: 50, pulled: days(3)}},
			containers: map[string]string{"ctr": "d1"},
			kept:       map[string]Reason{"d1": KeptInUse},
		},
		{
			name: "unused_for uses last-use record over pull time",
			imgs: three,
			pol:  func(p *policy.Prune) { p.UnusedFor = policy.Duration{Duration: 15 * 24 * time.Hour} },
			in: func(in *Input) {
				in.LastUse = func(id string, _ []string) time.Time {
					if id == "a" {
						return days(1)
					}
					return time.Time{}
				}
			},
			want:    []string{"unused_for:b"},
			kept:    map[string]Reason{"a": KeptNotNeeded, "c": KeptNotNeeded},
			planned: 110,
		},
		{
			name: "config Created date is never the age",
			imgs: []img{{id: "old", names: []string{"docker.io/library/old:1"}, layers: []string{"lo"}, size: 1, pulled: t0.Add(-time.Hour), created: days(900)}},
			pol:  func(p *policy.Prune) { p.UnusedFor = policy.Duration{Duration: time.Hour * 24} },
			kept: map[string]Reason{"old": KeptMinAge},
		},
		{
			name: "quota pressure removes LRU until low watermark",
			imgs: three,
			// usage 330, limit 300: high 270 exceeded, low 240 → need 90.
			pol:     func(p *policy.Prune) { p.Quota = policy.Amount{Bytes: 300} },
			want:    []string{"quota:a"},
			kept:    map[string]Reason{"b": KeptNotNeeded, "c": KeptNotNeeded},
			planned: 110,
		},
		{
			name: "below high watermark: no pressure",
			imgs: three,
			pol:  func(p *policy.Prune) { p.Quota = policy.Amount{Bytes: 367} }, // high = 330.3
			kept: map[string]Reason{"a": KeptNotNeeded},
		},
		{
			name: "shared layers counted when the last holder goes",
			imgs: []img{
				{id: "x", names: []string{"localhost/x:1"}, layers: []string{"shared", "lx"}, size: 100, pulled: days(30)},
				{id: "y", names: []string{"localhost/y:1"}, base: "shared", layers: []string{"ly"}, size: 100, pulled: days(20)},
				{id: "z", names: []string{"localhost/z:1"}, layers: []string{"lz"}, size: 100, pulled: days(10)},
			},
			// usage 430 (400 + 30 big data); limit 200 → need 430-160=270:
			// x frees only lx (shared still holds y), y then frees ly+shared.
			pol:     func(p *policy.Prune) { p.Quota = policy.Amount{Bytes: 200} },
			want:    []string{"quota:x", "quota:y"},
			kept:    map[string]Reason{"z": KeptNotNeeded},
			planned: 110 + 210,
		},
		{
			name:       "every protection holds under pressure",
			imgs:       append(slices.Clone(three), img{id: "ro", names: []string{"docker.io/library/ro:1"}, layers: []string{"lro"}, size: 100, pulled: days(40), ro: true}, img{id: "q", names: []string{"quay.io/x/q:1"}, layers: []string{"lq"}, size: 100, pulled: days(50)}, img{id: "k", names: []string{"docker.io/library/keepme:2"}, layers: []string{"lk"}, size: 100, pulled: days(60)}),
			containers: map[string]string{"ctr": "b"},
			pol: func(p *policy.Prune) {
				p.Quota = policy.Amount{Bytes: 10}
				p.Keep = []string{"keepme"}
			},
			in: func(in *Input) {
				in.Pins = matcher{"a": "a"}
				in.Quadlet = matcher{"quay.io/x/q:1": "q.container"}
			},
			want:    []string{"quota:c"},
			planned: 110,
			kept:    map[string]Reason{"a": KeptPinned, "b": KeptInUse, "ro": KeptReadOnly, "q": KeptQuadlet, "k": KeptKeep},
		},
		{
			name: "keep_last protects the newest pulls of each repository",
			imgs: []img{
				{id: "v1", names: []string{"docker.io/library/app:1"}, layers: []string{"l1"}, size: 100, pulled: days(30), created: days(1)},
				{id: "v2", names: []string{"docker.io/library/app:2"}, layers: []string{"l2"}, size: 100, pulled: days(20)},
				{id: "v3", names: []string{"docker.io/library/app:3"}, layers: []string{"l3"}, size: 100, pulled: days(10)},
			},
			pol:     func(p *policy.Prune) { p.Quota = policy.Amount{Bytes: 10}; p.KeepLast = 2 },
			want:    []string{"quota:v1"},
			kept:    map[string]Reason{"v2": KeptKeepLast, "v3": KeptKeepLast},
			planned: 110,
		},
		{
			name: "min_free pressure",
			imgs: three,
			pol:  func(p *policy.Prune) { p.MinFree = policy.Amount{Bytes: 1<<39 + 150} },
			want: []string{"quota:a", "quota:b"}, planned: 220,
		},
		{
			name: "quota soft limit caps the limit",
			imgs: three,
			in: func(in *Input) {
				in.Quota = &Quota{SoftLimitBytes: 1000, UsedBytes: 950} // need 950-800 = 150
			},
			want: []string{"quota:a", "quota:b"}, planned: 220,
		},
		{
			name: "orphan layers: old ones, leaves first; young child pins its parent",
			imgs: three,
			extra: []layergraph.Layer{
				{ID: "o1", UncompressedSize: 7, Created: days(5)},
				{ID: "o2", Parent: "o1", UncompressedSize: 8, Created: days(5)},
				{ID: "p1", UncompressedSize: 9, Created: days(5)},
				{ID: "p2", Parent: "p1", UncompressedSize: 9, Created: t0},
				{ID: "ro1", UncompressedSize: 9, Created: days(5), ReadOnly: true},
			},
			want:    []string{"orphan:o2", "orphan:o1"},
			planned: 15,
		},
		{
			// Issue 12 item 4: the finished layers of a pull in flight are
			// reached by no image until the pull records it.
			name: "orphan layers: min_age 0 still spares layers younger than the floor",
			imgs: three,
			pol:  func(p *policy.Prune) { p.MinAge = policy.Duration{} },
			extra: []layergraph.Layer{
				{ID: "pull1", UncompressedSize: 5, Created: t0.Add(-time.Second)},
				{ID: "pull2", Parent: "pull1", UncompressedSize: 5, Created: t0},
				{ID: "edge", UncompressedSize: 5, Created: t0.Add(-OrphanLayerFloor + time.Second)},
				{ID: "future", UncompressedSize: 5, Created: t0.Add(time.Minute)}, // clock skew
				{ID: "half", UncompressedSize: 5, Created: days(5), Incomplete: true},
				{ID: "nodate", UncompressedSize: 5},
				{ID: "old", UncompressedSize: 6, Created: t0.Add(-OrphanLayerFloor - time.Second)},
			},
			want:    []string{"orphan:old"},
			planned: 6,
		},
		{
			// A pull creates its image nameless and names it next.
			name: "dangling: min_age 0 still spares nameless images younger than the floor",
			imgs: append(slices.Clone(three),
				img{id: "inflight", layers: []string{"lf"}, size: 50, pulled: t0.Add(-NamelessImageFloor + time.Second)},
				img{id: "d1", layers: []string{"ld1"}, size: 50, pulled: t0.Add(-NamelessImageFloor - time.Second)}),
			pol:     func(p *policy.Prune) { p.MinAge = policy.Duration{} },
			want:    []string{"dangling:d1"},
			kept:    map[string]Reason{"inflight": KeptMinAge},
			planned: 60,
		},
		{
			name: "orphan layers: a min_age above the floor applies",
			imgs: three,
			pol:  func(p *policy.Prune) { p.MinAge = policy.Duration{Duration: 48 * time.Hour} },
			extra: []layergraph.Layer{
				{ID: "o1", UncompressedSize: 5, Created: days(1)},
				{ID: "o2", UncompressedSize: 6, Created: days(3)},
			},
			want:    []string{"orphan:o2"},
			planned: 6,
		},
		{
			name: "image with a missing top layer record: age unknown, kept",
			imgs: []img{{id: "m", names: []string{"localhost/m:1"}, layers: []string{"lm"}, size: 1, pulled: days(5)}},
			in: func(in *Input) {
				in.Snapshot.Layers = nil
				in.Policy.UnusedFor = policy.Duration{Duration: time.Hour}
			},
			kept: map[string]Reason{"m": KeptAgeUnknown},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Snapshot: build(tc.imgs, tc.containers, tc.extra...), Policy: basePolicy(), Now: t0}
			if tc.pol != nil {
				tc.pol(&in.Policy)
			}
			if tc.in != nil {
				tc.in(in)
			}
			p := Build(in)
			if got := removedIDs(p); !slices.Equal(got, tc.want) {
				t.Errorf("removals = %v, want %v", got, tc.want)
			}
			for id, why := range tc.kept {
				if got := keptReason(p, id); got != why {
					t.Errorf("kept %s: reason %q, want %q", id, got, why)
				}
			}
			if p.PlannedFreeBytes != tc.planned {
				t.Errorf("planned = %d, want %d", p.PlannedFreeBytes, tc.planned)
			}
			// Every image is either removed or kept, never both.
			seen := map[string]int{}
			for _, r := range p.Removals {
				if !r.Layer {
					seen[r.ID]++
				}
			}
			for _, k := range p.Kept {
				seen[k.ID]++
			}
			for _, im := range in.Snapshot.Images {
				if seen[im.ID] != 1 {
					t.Errorf("image %s appears %d times in removals+kept", im.ID, seen[im.ID])
				}
			}
		})
	}
}

// The plan's bytes must equal what the layer graph's DeleteImage replay
// (layergraph.Simulation) frees for the same removal order.
func TestBuildBytesMatchSimulation(t *testing.T) {
	s := synthetic(200, 3, 20, 7)
	in := &Input{Snapshot: s, Policy: basePolicy(), Now: t0}
	in.Policy.Quota = policy.Amount{Bytes: 1}
	p := Build(in)
	var ids []string
	for _, r := range p.Removals {
		if !r.Layer {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		t.Fatal("nothing planned under maximal pressure")
	}
	want := layergraph.FreedBy(s, ids).Bytes
	var orphan int64
	for _, r := range p.Removals {
		if r.Layer {
			orphan += r.Bytes
		}
	}
	if p.PlannedFreeBytes-orphan != want {
		t.Fatalf("planned image bytes %d, simulation %d", p.PlannedFreeBytes-orphan, want)
	}
}

// synthetic makes a store of n images over n*layersPer layers, with
// containers on every containerEvery-th image and base images shared by
// groups of `share` images.
func synthetic(n, layersPer, containerEvery, share int) *layergraph.Snapshot {
	s := &layergraph.Snapshot{Taken: t0, FS: layergraph.Filesystem{SizeBytes: 1 << 40, FreeBytes: 1 << 39}}
	for i := 0; i < n; i++ {
		parent := ""
		if i%share != 0 {
			parent = fmt.Sprintf("l%d-0", i-i%share) // share the group's base layer
		}
		for j := 0; j < layersPer; j++ {
			id := fmt.Sprintf("l%d-%d", i, j)
			s.Layers = append(s.Layers, layergraph.Layer{ID: id, Parent: parent, UncompressedSize: int64(1000 + i + j), Created: days(1 + i%300)})
			parent = id
		}
		names := []string{fmt.Sprintf("registry.example/r%d/img:%d", i%50, i)}
		if i%11 == 0 {
			names = nil
		}
		s.Images = append(s.Images, layergraph.Image{ID: fmt.Sprintf("img%06d", i), Names: names, TopLayer: parent, BigDataBytes: 500})
		if containerEvery > 0 && i%containerEvery == 0 {
			cid := fmt.Sprintf("c%d", i)
			s.Layers = append(s.Layers, layergraph.Layer{ID: "cl-" + cid, Parent: parent, Created: t0})
			s.Containers = append(s.Containers, layergraph.Container{ID: cid, ImageID: fmt.Sprintf("img%06d", i), LayerID: "cl-" + cid})
		}
	}
	return s
}
