package jobspec

// Gauge is a metric family a job exports from its last report's figures
// (report.Common.Metrics); the daemon keeps them in the state database
// and the metrics package serves them. A figure a report lacks is not
// exported (e.g. the quota ones without a quota).
type Gauge struct {
	// Name is the family's name: stowage_JOB_….
	Name string
	Help string
	// Label is the family's one label, "" for none.
	Label string
	// Figures are the report figures the family's series come from.
	Figures []Figure
}

// Figure maps one report figure onto a series.
type Figure struct {
	// Key is the figure's key in the report's Metrics.
	Key string
	// Label is the series' value of the gauge's label ("" without one).
	Label string
	// OmitZero drops the series when the figure is 0 (a timestamp that
	// means "none").
	OmitZero bool
}

// refreshGauges are the refresh job's figures.
var refreshGauges = []Gauge{
	{Name: "stowage_refresh_references", Label: "status",
		Help:    "References the last refresh run checked, by status: current, drifted, missing, blocked, error.",
		Figures: []Figure{{Key: "current", Label: "current"}, {Key: "drifted", Label: "drifted"}, {Key: "missing", Label: "missing"}, {Key: "blocked", Label: "blocked"}, {Key: "errors", Label: "error"}}},
	{Name: "stowage_refresh_drift_pending_references",
		Help:    "References whose registry digest differs from the local image after the last refresh run (drifted and not pulled).",
		Figures: []Figure{{Key: "drift_pending"}}},
	{Name: "stowage_refresh_drift_oldest_first_seen_timestamp_seconds",
		Help:    "When the oldest pending drift's remote digest was first seen, in seconds since the epoch (absent when no drift is pending).",
		Figures: []Figure{{Key: "drift_oldest_first_seen", OmitZero: true}}},
	{Name: "stowage_refresh_newer_pending_references",
		Help:    "Version-like tags for which the last refresh run found a newer version in the same track (not pulled).",
		Figures: []Figure{{Key: "newer_pending"}}},
	{Name: "stowage_refresh_newer_oldest_first_seen_timestamp_seconds",
		Help:    "When the oldest pending newer version was first reported, in seconds since the epoch (absent when none is pending).",
		Figures: []Figure{{Key: "newer_oldest_first_seen", OmitZero: true}}},
	{Name: "stowage_refresh_pulled_images",
		Help:    "Drifted references the last refresh run pulled.",
		Figures: []Figure{{Key: "pulled"}}},
	{Name: "stowage_refresh_requests", Label: "method",
		Help:    "Registry requests the last refresh run sent, by kind: HEAD (manifests), GET (manifests), tags_list (tag listing pages).",
		Figures: []Figure{{Key: "head_requests", Label: "HEAD"}, {Key: "get_requests", Label: "GET"}, {Key: "tags_requests", Label: "tags_list"}}},
}

// verifyGauges are the verify job's figures.
var verifyGauges = []Gauge{
	{Name: "stowage_verify_names", Label: "status",
		Help:    "Image names the last verify run judged, by status: accepted, rejected, unsigned, error.",
		Figures: []Figure{{Key: "accepted", Label: "accepted"}, {Key: "rejected", Label: "rejected"}, {Key: "unsigned", Label: "unsigned"}, {Key: "errors", Label: "error"}}},
	{Name: "stowage_verify_insecure_names",
		Help:    "Accepted names whose policy rule is insecureAcceptAnything, at the last verify run.",
		Figures: []Figure{{Key: "insecure"}}},
	{Name: "stowage_verify_untagged_names",
		Help:    "Names the last verify run removed (verify mode untag or remove).",
		Figures: []Figure{{Key: "untagged"}}},
	{Name: "stowage_verify_removed_images",
		Help:    "Images the last verify run removed (verify mode remove).",
		Figures: []Figure{{Key: "removed"}}},
	{Name: "stowage_verify_layers_checked",
		Help:    "Layers the last verify run re-hashed (present when integrity is on).",
		Figures: []Figure{{Key: "layers_checked"}}},
	{Name: "stowage_verify_corrupted_layers",
		Help:    "Layers whose content no longer matches their digest, at the last verify run (present when integrity is on).",
		Figures: []Figure{{Key: "corrupted_layers"}}},
}

// pruneGauges are the prune job's figures.
var pruneGauges = []Gauge{
	{Name: "stowage_prune_usage_bytes",
		Help:    "Store usage on disk (allocated bytes of writable layers, image data and containers) after the last prune run.",
		Figures: []Figure{{Key: "usage_bytes"}}},
	{Name: "stowage_prune_limit_bytes",
		Help:    "Effective limit of the last prune run: the policy quota or the disk quota's soft limit, whichever is lower; 0 = none.",
		Figures: []Figure{{Key: "limit_bytes"}}},
	{Name: "stowage_prune_need_bytes",
		Help:    "Bytes the last prune run had to free to get below its low watermark or above min_free; 0 = no pressure.",
		Figures: []Figure{{Key: "pressure_need_bytes"}}},
	{Name: "stowage_prune_freed_bytes",
		Help:    "Bytes the last prune run freed.",
		Figures: []Figure{{Key: "freed_bytes"}}},
	{Name: "stowage_prune_shortfall_bytes",
		Help:    "Bytes the last prune run needed to free but could not (everything left is in use, kept or too young); 0 = none.",
		Figures: []Figure{{Key: "shortfall_bytes"}}},
	{Name: "stowage_prune_removed_images",
		Help:    "Images the last prune run removed.",
		Figures: []Figure{{Key: "removed_images"}}},
	{Name: "stowage_prune_removed_layers",
		Help:    "Orphan layers the last prune run removed.",
		Figures: []Figure{{Key: "removed_layers"}}},
	{Name: "stowage_prune_kept_images",
		Help:    "Images the last prune run kept.",
		Figures: []Figure{{Key: "kept_images"}}},
	{Name: "stowage_prune_refused",
		Help:    "1 when the last prune run removed nothing because the store's metadata was inconsistent.",
		Figures: []Figure{{Key: "refused"}}},
	{Name: "stowage_prune_quota_used_bytes",
		Help:    "The user's disk quota usage on the graphroot filesystem at the last prune run (present when a quota applies).",
		Figures: []Figure{{Key: "quota_used_bytes"}}},
	{Name: "stowage_prune_quota_soft_limit_bytes",
		Help:    "The disk quota's soft limit (0 = none), present when a quota applies.",
		Figures: []Figure{{Key: "quota_soft_limit_bytes"}}},
	{Name: "stowage_prune_quota_hard_limit_bytes",
		Help:    "The disk quota's hard limit (0 = none), present when a quota applies.",
		Figures: []Figure{{Key: "quota_hard_limit_bytes"}}},
}

// volumesGauges are the volumes job's figures.
var volumesGauges = []Gauge{
	{Name: "stowage_volumes_removed",
		Help:    "Volumes the last volumes run removed.",
		Figures: []Figure{{Key: "removed"}}},
	{Name: "stowage_volumes_kept",
		Help:    "Unused volumes the last volumes run kept.",
		Figures: []Figure{{Key: "kept"}}},
	{Name: "stowage_volumes_freed_bytes",
		Help:    "Bytes the last volumes run freed.",
		Figures: []Figure{{Key: "freed_bytes"}}},
}
