// Package report defines what every job run reports: the common envelope that
// `stowage run JOB --format json` prints and the daemon reads, and the events
// the daemon turns into journal entries, D-Bus signals and notifications.
package report

import (
	"strings"
	"time"

	units "github.com/docker/go-units"
)

// Job names (the jobs themselves are listed in jobs/shared/jobspec).
const (
	JobRefresh = "refresh"
	JobVerify  = "verify"
	JobPrune   = "prune"
	JobVolumes = "volumes"
)

// Severity orders events for notification filtering.
type Severity string

// Severities, lowest first; they match the policy's notify urgencies.
const (
	SeverityLow      Severity = "low"
	SeverityNormal   Severity = "normal"
	SeverityCritical Severity = "critical"
)

// Event kinds. Each job's descriptor (jobs/shared/jobspec) lists the kinds it
// reports with their journald MESSAGE_ID and notification title.
const (
	EventDriftDetected      = "drift_detected"
	EventSignatureRejected  = "signature_rejected"
	EventSignatureRecovered = "signature_recovered"
	EventImageRemoved       = "image_removed"
	EventImageUntagged      = "image_untagged"
	EventImagePulled        = "image_pulled"
	EventLayerRemoved       = "layer_removed"
	EventLayerCorrupted     = "layer_corrupted"
	EventVolumeRemoved      = "volume_removed"
	EventQuotaExceeded      = "quota_exceeded"
	// EventNewerVersion is a newer version of a version-like tag
	// (Reference is the local reference, Newer the newer one).
	EventNewerVersion = "newer_version"
)

// EventKind is what the daemon's adapters know of one kind of event.
type EventKind struct {
	Kind string
	// MessageID is the kind's journald MESSAGE_ID: 32 lower-case hex digits,
	// generated once with `systemd-id128 new` and explained by the message
	// catalog. Never change one: users' journalctl filters refer to them.
	MessageID string
	// Title names the kind in a notification ("image removed").
	Title string
}

// Event is one finding or action of a job run, reported once.
type Event struct {
	Kind      string   `json:"kind"`
	Severity  Severity `json:"severity"`
	Message   string   `json:"message"`
	Topic     string   `json:"topic,omitempty"` // groups notifications updated in place
	Image     string   `json:"image,omitempty"`
	Reference string   `json:"reference,omitempty"`
	Digest    string   `json:"digest,omitempty"`
	// Newer is the newer version's reference (newer_version events).
	Newer  string `json:"newer,omitempty"`
	Volume string `json:"volume,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
}

// Common is embedded at the top of every job report.
type Common struct {
	Job      string    `json:"job"`
	DryRun   bool      `json:"dry_run"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Summary is one human line: what the run found and did.
	Summary string  `json:"summary"`
	Events  []Event `json:"events"`
	// Metrics are the run's job-specific figures (e.g. "freed_bytes",
	// "drifted"). The daemon keeps the last report's figures in the state
	// database and exports a documented, fixed set of them
	// (service/metrics reportFigures).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// HumanSize formats bytes as podman does: decimal units, 3 significant
// digits, a space before the unit ("413 kB").
func HumanSize(n int64) string {
	s := units.HumanSizeWithPrecision(float64(n), 3)
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i > 0 {
		s = s[:i] + " " + s[i:]
	}
	return s
}
