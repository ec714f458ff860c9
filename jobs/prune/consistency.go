package prune

import (
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/state"
)

// ErrInconsistent marks a store whose metadata does not add up: pruning it
// would remove what images and containers need, so nothing is removed.
var ErrInconsistent = errors.New("store metadata is inconsistent")

// CountsBucket and CountsKey locate the counts of the last prune run in
// the state database.
const (
	CountsBucket = "prune"
	CountsKey    = "counts"
)

// Counts is the size of a store's metadata after a prune run.
type Counts struct {
	Images int `json:"images"`
	// ImageLayers counts the layers no container owns (image layers and
	// orphans).
	ImageLayers int       `json:"image_layers"`
	At          time.Time `json:"at"`
}

// CountsOf counts s.
func CountsOf(s *layergraph.Snapshot, at time.Time) Counts {
	own := containerLayerSet(s)
	c := Counts{Images: len(s.Images), At: at}
	for _, l := range s.Layers {
		if !own[l.ID] {
			c.ImageLayers++
		}
	}
	return c
}

func containerLayerSet(s *layergraph.Snapshot) map[string]bool {
	own := make(map[string]bool, len(s.Containers))
	for _, c := range s.Containers {
		own[c.LayerID] = true
	}
	return own
}

// LoadCounts reads the counts the last prune run recorded (nil: none yet).
func LoadCounts(db *state.DB) (*Counts, error) {
	var c Counts
	err := db.View(CountsBucket, func(b *bolt.Bucket) error { return state.GetJSON(b, CountsKey, &c) })
	switch {
	case errors.Is(err, state.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading the last run's store counts: %w", err)
	}
	return &c, nil
}

// SaveCounts records c as the last run's counts.
func SaveCounts(db *state.DB, c Counts) error {
	err := db.Update(CountsBucket, func(b *bolt.Bucket) error { return state.PutJSON(b, CountsKey, c) })
	if err != nil {
		return fmt.Errorf("recording store counts: %w", err)
	}
	return nil
}

// Collapse thresholds: the image count fell to under a quarter of the last
// run's (which had at least collapseMinImages) while at least half of its
// image layers are still there. Removing images removes their layers too;
// images vanishing alone means the image list was lost.
const (
	collapseMinImages = 8
	collapseFactor    = 4
)

// Consistency checks that s's metadata adds up before anything is pruned.
// It is pure. Each problem found is one line of the returned list (empty:
// consistent). prev is the previous run's counts (nil: none).
//
// containers/storage reads an empty, `[]` or missing images.json as "no
// images": then every layer looks orphaned and every image gone, and a
// prune would take all of them. So the store is refused when:
//   - a container names an image the store does not have;
//   - a container's layer sits on a layer no image reaches;
//   - there are no images, but layers other than containers' own, any of
//     them older than OrphanLayerFloor or undated (younger ones may be a
//     first pull in flight);
//   - the image count collapsed since the last run while the layers stayed.
func Consistency(s *layergraph.Snapshot, prev *Counts, now time.Time) []string {
	var problems []string
	images := make(map[string]bool, len(s.Images))
	for _, img := range s.Images {
		images[img.ID] = true
	}
	g := layergraph.NewGraph(s)
	var missingImage, unreachedBase []string
	for _, c := range s.Containers {
		if c.ImageID == "" {
			continue // a rootfs container (no image)
		}
		if !images[c.ImageID] {
			missingImage = append(missingImage, fmt.Sprintf("%.12s (image %.12s)", c.ID, c.ImageID))
			continue
		}
		if l, ok := g.Layer(c.LayerID); ok && l.Parent != "" && !g.ImageReachable(l.Parent) {
			unreachedBase = append(unreachedBase, fmt.Sprintf("%.12s (layer %.12s)", c.ID, l.Parent))
		}
	}
	if len(missingImage) > 0 {
		sort.Strings(missingImage)
		problems = append(problems, fmt.Sprintf("%d container(s) use images the store does not list: %s (images.json empty, missing or damaged?)",
			len(missingImage), list(missingImage)))
	}
	if len(unreachedBase) > 0 {
		sort.Strings(unreachedBase)
		problems = append(problems, fmt.Sprintf("%d container(s) sit on layers no image reaches: %s",
			len(unreachedBase), list(unreachedBase)))
	}
	cur := CountsOf(s, now)
	if cur.Images == 0 && cur.ImageLayers > 0 {
		own := containerLayerSet(s)
		settled := 0
		for _, l := range s.Layers {
			if !own[l.ID] && (l.Created.IsZero() || now.Sub(l.Created) >= OrphanLayerFloor) {
				settled++
			}
		}
		if settled > 0 {
			problems = append(problems, fmt.Sprintf("the store lists no images but holds %d image layer(s) (images.json empty, missing or damaged?)", cur.ImageLayers))
		}
	}
	if prev != nil && prev.Images > 0 && cur.ImageLayers > 0 && cur.ImageLayers*2 >= prev.ImageLayers {
		if cur.Images == 0 || prev.Images >= collapseMinImages && cur.Images*collapseFactor < prev.Images {
			problems = append(problems, fmt.Sprintf("images fell from %d to %d since the last run (%s) while %d of %d image layers remain (images.json damaged or replaced?)",
				prev.Images, cur.Images, prev.At.UTC().Format(time.RFC3339), cur.ImageLayers, prev.ImageLayers))
		}
	}
	return problems
}

// list shows at most five entries.
func list(s []string) string {
	const n = 5
	if len(s) <= n {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v and %d more", s[:n], len(s)-n)
}
