// Package policy defines stowage's administrator policy: the TOML schema, its
// embedded defaults, lookup of the policy file and drop-ins, and strict
// validation that reports every problem as FILE:LINE:COL.
package policy

import (
	"path"
	"strings"
)

// Version is the only policy schema version this build understands.
const Version = 1

// Policy is the effective, validated configuration of stowage.
type Policy struct {
	Version  int      `toml:"version"`
	Storage  Storage  `toml:"storage"`
	Schedule Schedule `toml:"schedule"`
	Refresh  Refresh  `toml:"refresh"`
	Verify   Verify   `toml:"verify"`
	Prune    Prune    `toml:"prune"`
	Volumes  Volumes  `toml:"volumes"`
	Notify   Notify   `toml:"notify"`
	Metrics  Metrics  `toml:"metrics"`
}

// Storage selects the containers/storage store; empty fields are resolved the
// way the host's podman resolves them (asked with podman info).
type Storage struct {
	Driver    string `toml:"driver"`
	GraphRoot string `toml:"graphroot"`
	RunRoot   string `toml:"runroot"`
}

// Schedule holds one cron specification per job plus a random start delay.
type Schedule struct {
	Refresh CronSpec `toml:"refresh"`
	Verify  CronSpec `toml:"verify"`
	Prune   CronSpec `toml:"prune"`
	Volumes CronSpec `toml:"volumes"`
	Jitter  Duration `toml:"jitter"`
	// RunTimeout bounds one job run; the daemon kills a worker past it.
	RunTimeout Duration `toml:"run_timeout"`
	// DeferOnMetered and DeferOnBattery list the work the daemon's runs
	// leave out while NetworkManager reports a metered connection, or
	// UPower that the machine runs on battery. The rest of each run still
	// happens; the work left out runs once the condition clears.
	DeferOnMetered []DeferWork `toml:"defer_on_metered"`
	DeferOnBattery []DeferWork `toml:"defer_on_battery"`
}

// Refresh configures the registry digest refresh job.
type Refresh struct {
	Mode        RefreshMode   `toml:"mode"`
	Rules       []RefreshRule `toml:"rule"`
	Concurrency int           `toml:"concurrency"`
	PerRegistry int           `toml:"per_registry"`
	// Rate paces the requests to one registry host in one run, in requests
	// per second (0 = unpaced): a host's run is then spread out instead of
	// arriving at the registry as one burst.
	Rate    int      `toml:"rate"`
	Timeout Duration `toml:"timeout"`
	// Budget caps the requests sent to one registry host in one run (0 = no cap).
	Budget int `toml:"budget"`
	// Newer is how far the job looks for newer versions of version-like
	// tags (one tag listing per repository and run unless off).
	Newer NewerLevel `toml:"newer"`
	// NewerTags and NewerExclude are tag globs: a tag (local or remote)
	// takes part in the newer-version check when it matches one NewerTags
	// glob (every tag when empty) and no NewerExclude glob.
	NewerTags    []string `toml:"newer_tags"`
	NewerExclude []string `toml:"newer_exclude"`
}

// RefreshRule overrides the refresh mode for references matching a glob.
type RefreshRule struct {
	Match string      `toml:"match"`
	Mode  RefreshMode `toml:"mode"`
	// Newer overrides refresh.newer for matching references; empty keeps it.
	Newer NewerLevel `toml:"newer"`
	// PullNewer pulls the newer version found (needs Mode pull); the old
	// tag stays.
	PullNewer bool `toml:"pull_newer"`
}

// Verify configures signature re-verification.
type Verify struct {
	Mode       VerifyMode `toml:"mode"`
	PolicyJSON string     `toml:"policy_json"`
	Integrity  bool       `toml:"integrity"`
	// IntegrityRate caps the integrity scan's read rate in bytes/s ("0" = no cap).
	IntegrityRate Amount `toml:"integrity_rate"`
}

// Prune configures quota-aware image pruning.
type Prune struct {
	Enabled       bool     `toml:"enabled"`
	Quota         Amount   `toml:"quota"`
	HighWatermark Percent  `toml:"high_watermark"`
	LowWatermark  Percent  `toml:"low_watermark"`
	MinFree       Amount   `toml:"min_free"`
	MinAge        Duration `toml:"min_age"`
	UnusedFor     Duration `toml:"unused_for"`
	Keep          []string `toml:"keep"`
	KeepLast      int      `toml:"keep_last"`
	Dangling      bool     `toml:"dangling"`
	OrphanLayers  bool     `toml:"orphan_layers"`
}

// Volumes configures unused Podman volume cleanup.
type Volumes struct {
	Enabled       bool     `toml:"enabled"`
	AnonymousOnly bool     `toml:"anonymous_only"`
	MinAge        Duration `toml:"min_age"`
	KeepLabels    []string `toml:"keep_labels"`
	// Keep lists volume name globs never removed; Include lists name globs of
	// named volumes that may be removed although anonymous_only is set.
	Keep         []string `toml:"keep"`
	Include      []string `toml:"include"`
	PodmanSocket string   `toml:"podman_socket"`
}

// Notify configures desktop notifications.
type Notify struct {
	Desktop    bool    `toml:"desktop"`
	MinUrgency Urgency `toml:"min_urgency"`
	// Topics lists the notification topics shown (globs); empty shows all.
	Topics []string `toml:"topics"`
}

// Wants reports whether a finding of job with this kind and notification
// topic may be shown: Topics is empty, or one of its globs matches the
// topic (path.Match: refresh:docker.io/library/*), or names the topic's
// family, the part before its first ':' (refresh, refresh-newer, verify,
// verify-image, prune-quota, volumes). A finding without a topic has the
// topic JOB/KIND (family JOB).
func (n Notify) Wants(job, kind, topic string) bool {
	if len(n.Topics) == 0 {
		return true
	}
	family := topic
	if topic == "" {
		topic, family = job+"/"+kind, job
	} else if i := strings.IndexByte(topic, ':'); i >= 0 {
		family = topic[:i]
	}
	for _, g := range n.Topics {
		if g == family {
			return true
		}
		if ok, _ := path.Match(g, topic); ok {
			return true
		}
	}
	return false
}

// Metrics configures the Prometheus metrics the daemon writes to a file.
type Metrics struct {
	// Textfile is the node_exporter textfile collector file written after
	// every run: "" = none, "auto" or an absolute path ending in .prom.
	Textfile Textfile `toml:"textfile"`
}

// MayPull reports whether a refresh run under this policy may pull (and so
// write to the store): the default mode or a rule is pull.
func (r Refresh) MayPull() bool {
	if r.Mode == RefreshPull {
		return true
	}
	for _, rule := range r.Rules {
		if rule.Mode == RefreshPull {
			return true
		}
	}
	return false
}
