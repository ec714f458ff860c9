// Package verify is the `verify` job: it re-checks local images against the
// current trust policy (signatures stored with each image, evaluated per
// registry name), reports what changed since the previous run, optionally
// untags or removes failing images, and optionally re-hashes every layer
// (package integrity).
package verify

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	storage "go.podman.io/storage"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/layergraph"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/verify/integrity"
	"github.com/stowage/stowage/policy"
)

// Status is the verdict on one (image, name) pair.
type Status string

// Statuses.
const (
	StatusAccepted Status = "accepted"
	StatusRejected Status = "rejected"
	StatusUnsigned Status = "unsigned"
	StatusError    Status = "error"
)

// Failing reports whether s is a definitive failure (rejected or unsigned);
// errors are not: nothing is concluded, nor acted upon, from an error.
func (s Status) Failing() bool { return s == StatusRejected || s == StatusUnsigned }

// Result is the verdict on one name of one image.
type Result struct {
	ImageID   string `json:"image_id"`
	Reference string `json:"reference"`
	Status    Status `json:"status"`
	// Reason: for accepted, the rule types that allowed the image
	// ("signedBy", "sigstoreSigned", "insecureAcceptAnything"); otherwise
	// the policy's or the error's message.
	Reason string `json:"reason"`
	// Rule lists the policy.json requirement types in scope for the name.
	Rule string `json:"rule,omitempty"`
	// Changed is true when the status differs from the previous run's (a
	// first-seen failing name counts as changed; a first-seen accepted
	// name does not).
	Changed  bool   `json:"changed"`
	Previous Status `json:"previous,omitempty"`
	// TrustConfig marks an error caused by the trust configuration (a key
	// file, keyring, certificate or Rekor key that cannot be loaded).
	TrustConfig bool `json:"trust_config,omitempty"`
}

// Report is the JSON report of one verify run.
type Report struct {
	report.Common
	Mode       policy.VerifyMode  `json:"mode"`
	PolicyJSON string             `json:"policy_json,omitempty"`
	Results    []Result           `json:"results"`
	Actions    []Action           `json:"actions,omitempty"`
	Layers     []integrity.Result `json:"layers,omitempty"`
	// TrustConfigErrors are the broken key sources of the trust policy
	// (each naming its file); the names they cover were not judged and
	// nothing was removed on their account. The CLI exits non-zero.
	TrustConfigErrors []string `json:"trust_config_errors,omitempty"`
	// IntegrityDeferred is why the integrity scan was left out
	// (Options.DeferIntegrity), empty when it ran or was not asked for.
	IntegrityDeferred string `json:"integrity_deferred,omitempty"`
}

// Options configure one run.
type Options struct {
	Mode       policy.VerifyMode
	PolicyJSON string // "" = containers default lookup
	Integrity  bool
	// DeferIntegrity, when not empty, is why this run leaves the integrity
	// scan out although Integrity asks for it ("on battery", decided by
	// the daemon); signatures are verified as usual.
	DeferIntegrity string
	// IntegrityRate caps the integrity scan's reads in bytes/s (0 = none).
	IntegrityRate int64
	DryRun        bool
	// GraphRoot and Driver locate layer files for the integrity scan.
	GraphRoot, Driver string
	// State persists verdicts between runs; nil = no memory of past runs.
	State *state.DB
	Log   *slog.Logger
	// Clock tells the time (report, verdicts) and paces the integrity scan
	// (clock.Real when nil).
	Clock clock.Clock
}

// Run performs one verify run against st.
func Run(ctx context.Context, st storage.Store, o Options) (*Report, error) {
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Mode == "" {
		o.Mode = policy.VerifyReport
	}
	rep := &Report{
		Common:     report.Common{Job: report.JobVerify, DryRun: o.DryRun, Started: o.Clock.Now(), Events: []report.Event{}},
		Mode:       o.Mode,
		PolicyJSON: o.PolicyJSON,
		Results:    []Result{},
	}
	if o.Integrity && o.DeferIntegrity != "" {
		o.Integrity = false
		rep.IntegrityDeferred = o.DeferIntegrity
		o.Log.Info("integrity scan deferred", "reason", o.DeferIntegrity)
	}
	if o.Mode == policy.VerifyOff && !o.Integrity {
		rep.Finished = o.Clock.Now()
		rep.Summary = "verify is off ([verify] mode = \"off\")"
		rep.Metrics = map[string]float64{}
		noteDeferred(rep)
		return rep, nil
	}
	images, err := st.Images()
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	sort.Slice(images, func(i, j int) bool { return images[i].ID < images[j].ID })

	if o.Mode != policy.VerifyOff {
		if err := runSignatures(ctx, st, images, o, rep); err != nil {
			return nil, err
		}
	}
	if o.Integrity {
		if err := runIntegrity(ctx, st, images, o, rep); err != nil {
			return nil, err
		}
	}
	rep.Finished = o.Clock.Now()
	rep.Metrics = metrics(rep)
	rep.Summary = summary(rep)
	noteDeferred(rep)
	return rep, nil
}

// noteDeferred says in the summary and the figures that the integrity scan
// was left out, and why.
func noteDeferred(rep *Report) {
	if rep.IntegrityDeferred == "" {
		rep.Metrics[report.MetricIntegrityDeferred] = 0
		return
	}
	rep.Metrics[report.MetricIntegrityDeferred] = 1
	rep.Summary += "; integrity scan deferred: " + rep.IntegrityDeferred
}

func runSignatures(ctx context.Context, st storage.Store, images []storage.Image, o Options, rep *Report) error {
	ev, err := NewEvaluator(st, o.PolicyJSON)
	if err != nil {
		return err
	}
	defer ev.Close()
	for _, img := range images {
		if err := ctx.Err(); err != nil {
			return err
		}
		rs := ev.EvaluateImage(ctx, img)
		for _, r := range rs {
			o.Log.Debug("verified", "image", r.ImageID, "reference", r.Reference, "status", r.Status, "reason", r.Reason)
		}
		rep.Results = append(rep.Results, rs...)
	}
	rep.Results, rep.TrustConfigErrors = ev.Recheck(rep.Results)
	for _, e := range rep.TrustConfigErrors {
		o.Log.Error("trust configuration broken: the images it covers are neither judged nor removed", "error", e)
	}

	prev := map[string]Record{}
	if o.State != nil {
		if prev, err = LoadRecords(o.State); err != nil {
			return err
		}
	}
	now := o.Clock.Now()
	var next map[string]Record
	var events []report.Event
	rep.Results, next, events = Compare(prev, rep.Results, now)
	rep.Events = append(rep.Events, events...)

	containers, err := st.Containers()
	if err != nil {
		// Fail closed: without the container list no action is safe.
		o.Log.Warn("listing containers failed; no actions this run", "error", err)
		containers = nil
		if o.Mode == policy.VerifyUntag || o.Mode == policy.VerifyRemove {
			rep.Actions = append(rep.Actions, Action{Kind: ActionNone, Skipped: true, Reason: fmt.Sprintf("listing containers: %v", err)})
		}
	} else {
		rep.Actions = Plan(o.Mode, Infos(images, containers), rep.Results)
	}
	if !o.DryRun {
		var evs []report.Event
		rep.Actions, evs = Apply(ctx, st, rep.Actions, o.Log)
		rep.Events = append(rep.Events, evs...)
		if o.State != nil {
			if err := SaveRecords(o.State, next); err != nil {
				return err
			}
		}
	}
	return nil
}

func runIntegrity(ctx context.Context, st storage.Store, images []storage.Image, o Options, rep *Report) error {
	layers, err := st.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	byLayer := LayerImages(images, layers)
	sc := &integrity.Scanner{GraphRoot: o.GraphRoot, Driver: o.Driver, Store: st, Throttle: integrity.NewThrottle(o.IntegrityRate, o.Clock)}
	sort.Slice(layers, func(i, j int) bool { return layers[i].ID < layers[j].ID })
	rep.Layers = []integrity.Result{}
	for _, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Container layers (and layers written by other means) record no
		// digest: there is nothing to compare against.
		if l.UncompressedDigest == "" {
			continue
		}
		r := sc.Check(ctx, l.ID, l.UncompressedDigest, l.ReadOnly)
		r.Images = byLayer[l.ID]
		if r.Status == integrity.StatusError {
			// A layer deleted while we read it is not corruption.
			if _, err := st.Layer(l.ID); err != nil {
				r.Status, r.Reason = integrity.StatusSkipped, "layer removed during the scan"
			}
		}
		o.Log.Debug("layer checked", "layer", r.ID, "status", r.Status, "bytes", r.Bytes)
		rep.Layers = append(rep.Layers, r)
		if r.Status == integrity.StatusCorrupted {
			rep.Events = append(rep.Events, report.Event{
				Kind:     report.EventLayerCorrupted,
				Severity: report.SeverityCritical,
				Message:  fmt.Sprintf("layer %s is corrupted (%s); images: %v", short(r.ID), r.Reason, shortAll(r.Images)),
				Topic:    "verify-layer:" + r.ID,
				Image:    first(r.Images),
				Digest:   string(l.UncompressedDigest),
			})
		}
	}
	return nil
}

// LayerImages maps each layer ID to the sorted IDs of the images whose
// layer chains (top layer and mapped top layers, down to the base) contain it.
func LayerImages(images []storage.Image, layers []storage.Layer) map[string][]string {
	s := &layergraph.Snapshot{Layers: make([]layergraph.Layer, len(layers)), Images: make([]layergraph.Image, len(images))}
	for i, l := range layers {
		s.Layers[i] = layergraph.Layer{ID: l.ID, Parent: l.Parent}
	}
	for i, img := range images {
		s.Images[i] = layergraph.Image{ID: img.ID, TopLayer: img.TopLayer, MappedTopLayers: img.MappedTopLayers}
	}
	g := layergraph.NewGraph(s)
	out := map[string][]string{}
	for i := range s.Images {
		for _, id := range g.Chain(&s.Images[i]) {
			out[id] = append(out[id], s.Images[i].ID)
		}
	}
	for _, ids := range out {
		sort.Strings(ids)
	}
	return out
}

func metrics(rep *Report) map[string]float64 {
	m := map[string]float64{"accepted": 0, "rejected": 0, "unsigned": 0, "errors": 0, "insecure": 0}
	for _, r := range rep.Results {
		switch r.Status {
		case StatusAccepted:
			m["accepted"]++
			if r.Reason == RuleInsecureAcceptAnything {
				m["insecure"]++
			}
		case StatusRejected:
			m["rejected"]++
		case StatusUnsigned:
			m["unsigned"]++
		case StatusError:
			m["errors"]++
		}
	}
	for _, a := range rep.Actions {
		if a.Applied && a.Kind == ActionUntag {
			m["untagged"] += float64(len(a.Names))
		}
		if a.Applied && a.Kind == ActionRemove {
			m["removed"]++
		}
	}
	if rep.Layers != nil {
		m["corrupted_layers"] = 0
		for _, l := range rep.Layers {
			m["layers_checked"]++
			m["layer_bytes"] += float64(l.Bytes)
			if l.Status == integrity.StatusCorrupted {
				m["corrupted_layers"]++
			}
		}
	}
	return m
}

func summary(rep *Report) string {
	m := rep.Metrics
	s := fmt.Sprintf("%d names checked: %d accepted, %d rejected, %d unsigned, %d errors",
		len(rep.Results), int(m["accepted"]), int(m["rejected"]), int(m["unsigned"]), int(m["errors"]))
	if n := int(m["untagged"]); n > 0 {
		s += fmt.Sprintf("; %d untagged", n)
	}
	if n := int(m["removed"]); n > 0 {
		s += fmt.Sprintf("; %d images removed", n)
	}
	if n := len(rep.TrustConfigErrors); n > 0 {
		s += fmt.Sprintf("; trust configuration broken (%s): affected names not judged, nothing removed for them", strings.Join(rep.TrustConfigErrors, "; "))
	}
	if rep.Layers != nil {
		s += fmt.Sprintf("; %d layers checked, %d corrupted", int(m["layers_checked"]), int(m["corrupted_layers"]))
	}
	if rep.DryRun {
		s += " (dry run)"
	}
	return s
}

func short(id string) string {
	if d, err := digest.Parse(id); err == nil {
		id = d.Encoded()
	}
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func shortAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}

func first(ids []string) string {
	if len(ids) > 0 {
		return ids[0]
	}
	return ""
}
