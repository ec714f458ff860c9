package verify

import (
	"fmt"
	"sort"
	"strings"

	storage "go.podman.io/storage"

	"github.com/stowage/stowage/policy"
)

// ActionKind is what an action does to an image.
type ActionKind string

// Action kinds.
const (
	// ActionUntag removes failing names; the image itself stays.
	ActionUntag ActionKind = "untag"
	// ActionRemove deletes the image (all its names failed, no container
	// uses it).
	ActionRemove ActionKind = "remove"
	// ActionNone records that no action could be planned at all.
	ActionNone ActionKind = "none"
)

// Action is one planned (and, unless dry-run, applied) change to the store.
type Action struct {
	Kind    ActionKind `json:"kind"`
	ImageID string     `json:"image_id,omitempty"`
	// Names are the failing names the action removes (untag) or that made
	// the image go (remove).
	Names []string `json:"names,omitempty"`
	// Applied is true once the change was made.
	Applied bool `json:"applied"`
	// Skipped actions are not carried out; Reason says why.
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// UntagInstead makes a remove that the executor finds unsafe (a
	// container appeared) fall back to untagging (untag mode only).
	UntagInstead bool `json:"-"`
}

// ImageInfo is what the planner needs to know about one image.
type ImageInfo struct {
	ID         string
	Names      []string
	Containers []string // IDs of containers (podman's or buildah's) using it
	ReadOnly   bool
}

// Infos joins images with the containers that use them.
func Infos(images []storage.Image, containers []storage.Container) []ImageInfo {
	used := map[string][]string{}
	for _, c := range containers {
		used[c.ImageID] = append(used[c.ImageID], c.ID)
	}
	out := make([]ImageInfo, 0, len(images))
	for _, img := range images {
		out = append(out, ImageInfo{ID: img.ID, Names: img.Names, Containers: used[img.ID], ReadOnly: img.ReadOnly})
	}
	return out
}

// Plan decides the actions of one run; it does no I/O.
//
//   - report (and off): no actions.
//   - untag: every failing (rejected or unsigned) name is removed. When that
//     leaves an image with no name and no container, the image is removed
//     as `podman rmi NAME` would; with a container it stays, nameless.
//   - remove: an image is removed when no container uses it and every one
//     of its names fails; otherwise nothing is done to it and a skipped
//     action says why (in use, a name passes, a name could not be checked).
//
// A name whose check ended in an error is never acted upon, and it blocks
// the removal of its image: nothing is deleted on uncertain grounds.
func Plan(mode policy.VerifyMode, images []ImageInfo, results []Result) []Action {
	if mode != policy.VerifyUntag && mode != policy.VerifyRemove {
		return nil
	}
	byImage := map[string][]Result{}
	for _, r := range results {
		byImage[r.ImageID] = append(byImage[r.ImageID], r)
	}
	var actions []Action
	for _, img := range images {
		var failing, passing, unknown []string
		checked := map[string]bool{}
		for _, r := range byImage[img.ID] {
			checked[r.Reference] = true
			switch {
			case r.Status.Failing():
				failing = append(failing, r.Reference)
			case r.Status == StatusAccepted:
				passing = append(passing, r.Reference)
			default:
				unknown = append(unknown, r.Reference)
			}
		}
		for _, n := range img.Names {
			if !checked[n] {
				unknown = append(unknown, n) // named after the check: not verified
			}
		}
		if len(failing) == 0 {
			continue
		}
		sort.Strings(failing)
		a := Action{ImageID: img.ID, Names: failing}
		canRemove := len(img.Containers) == 0 && len(passing) == 0 && len(unknown) == 0
		switch {
		case img.ReadOnly:
			a.Kind, a.Skipped, a.Reason = kindFor(mode), true, "image is in a read-only image store"
		case mode == policy.VerifyUntag && canRemove:
			a.Kind, a.UntagInstead = ActionRemove, true
			a.Reason = "every name fails the trust policy and no container uses the image"
		case mode == policy.VerifyUntag:
			a.Kind = ActionUntag
			a.Reason = keptBecause(img, passing, unknown)
		case canRemove:
			a.Kind = ActionRemove
			a.Reason = "every name fails the trust policy and no container uses the image"
		default:
			a.Kind, a.Skipped = ActionRemove, true
			a.Reason = "not removed: " + keptBecause(img, passing, unknown)
		}
		actions = append(actions, a)
	}
	return actions
}

func kindFor(mode policy.VerifyMode) ActionKind {
	if mode == policy.VerifyRemove {
		return ActionRemove
	}
	return ActionUntag
}

// keptBecause explains why an image must stay.
func keptBecause(img ImageInfo, passing, unknown []string) string {
	var why []string
	if len(img.Containers) > 0 {
		why = append(why, fmt.Sprintf("in use by container(s) %s", strings.Join(shortAll(img.Containers), ", ")))
	}
	if len(passing) > 0 {
		why = append(why, fmt.Sprintf("name(s) %s pass the trust policy", strings.Join(passing, ", ")))
	}
	if len(unknown) > 0 {
		why = append(why, fmt.Sprintf("name(s) %s could not be verified", strings.Join(unknown, ", ")))
	}
	return "image kept: " + strings.Join(why, "; ")
}
