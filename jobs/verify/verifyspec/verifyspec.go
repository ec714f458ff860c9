// Package verifyspec is the verify job's light half: its descriptor (name,
// schedule, events, gauges), which the daemon and its adapters read
// without linking the job (which links containers/storage).
package verifyspec

import (
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// Descriptor is the verify job: it re-verifies signatures and, optionally,
// layer integrity.
var Descriptor = jobspec.Descriptor{
	Name:     report.JobVerify,
	Schedule: func(s policy.Schedule) policy.CronSpec { return s.Verify },
	Mutating: mutating,
	// Reading subuid-owned layer files (integrity) needs the namespace
	// just as deleting does.
	UserNamespace: func(p *policy.Policy, dryRun bool) bool {
		return p.Verify.Integrity || !dryRun && mutating(p)
	},
	Events: []report.EventKind{
		{Kind: report.EventSignatureRejected, MessageID: "c260b8f8392c43e6b9dc4507da0d6b4a", Title: "signature rejected"},
		{Kind: report.EventSignatureRecovered, MessageID: "10e7153b5d0e4ae397dce9b7af608abc", Title: "signature valid again"},
		{Kind: report.EventImageUntagged, MessageID: "92051d9bc03a4ea787d0d1ec7e5bd36a", Title: "image untagged"},
		jobspec.ImageRemoved,
		{Kind: report.EventLayerCorrupted, MessageID: "63b0d8a824164a06a8f57b39911f9881", Title: "corrupted layer"},
	},
	Gauges: gauges,
}

func mutating(p *policy.Policy) bool {
	return p.Verify.Mode == policy.VerifyUntag || p.Verify.Mode == policy.VerifyRemove
}

// gauges are the verify job's figures.
var gauges = []jobspec.Gauge{
	{Name: "stowage_verify_names", Label: "status",
		Help:    "Image names the last verify run judged, by status: accepted, rejected, unsigned, error.",
		Figures: []jobspec.Figure{{Key: "accepted", Label: "accepted"}, {Key: "rejected", Label: "rejected"}, {Key: "unsigned", Label: "unsigned"}, {Key: "errors", Label: "error"}}},
	{Name: "stowage_verify_insecure_names",
		Help:    "Accepted names whose policy rule is insecureAcceptAnything, at the last verify run.",
		Figures: []jobspec.Figure{{Key: "insecure"}}},
	{Name: "stowage_verify_untagged_names",
		Help:    "Names the last verify run removed (verify mode untag or remove).",
		Figures: []jobspec.Figure{{Key: "untagged"}}},
	{Name: "stowage_verify_removed_images",
		Help:    "Images the last verify run removed (verify mode remove).",
		Figures: []jobspec.Figure{{Key: "removed"}}},
	{Name: "stowage_verify_layers_checked",
		Help:    "Layers the last verify run re-hashed (present when integrity is on).",
		Figures: []jobspec.Figure{{Key: "layers_checked"}}},
	{Name: "stowage_verify_corrupted_layers",
		Help:    "Layers whose content no longer matches their digest, at the last verify run (present when integrity is on).",
		Figures: []jobspec.Figure{{Key: "corrupted_layers"}}},
}
