package policy

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// KeyDoc documents one policy key, for the stowage.toml(5) man page.
type KeyDoc struct {
	// Key is the dotted TOML path, e.g. "prune.quota"; keys of an array of
	// tables are written through it ("refresh.rule.match").
	Key string
	// Section is the table the key lives in ("" for top-level keys).
	Section string
	// Type names the value syntax ("duration", "size or percentage", ...).
	Type string
	// Default is the value in the embedded default policy, in TOML syntax
	// ("" for keys of an array of tables, which has no default element).
	Default string
	// Description explains the key.
	Description string
}

// SectionDoc documents one policy table.
type SectionDoc struct {
	Name        string // "prune"; "refresh.rule" for an array of tables
	Description string
	Keys        []KeyDoc
}

// Docs walks the Policy schema by its toml tags and returns every table with
// every key, its type, its default and its description, in schema order.
// It fails if a key has no description or a description names no key, so
// the documentation cannot drift from the schema.
func Docs() ([]SectionDoc, error) {
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(defaultTOML)).Decode(&raw); err != nil {
		return nil, fmt.Errorf("embedded default policy: %w", err)
	}
	descs := keyDescriptions()
	secDescs := sectionDescriptions()
	used := map[string]bool{}
	top := SectionDoc{Name: "", Description: secDescs[""]}
	var out []SectionDoc
	var problems []string

	var walk func(prefix string, t reflect.Type, def map[string]any, sec *SectionDoc)
	walk = func(prefix string, t reflect.Type, def map[string]any, sec *SectionDoc) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			key := name
			if prefix != "" {
				key = prefix + "." + name
			}
			switch {
			case isTable(f.Type):
				sub := SectionDoc{Name: key, Description: secDescs[key]}
				used[key] = true
				if sub.Description == "" {
					problems = append(problems, "section ["+key+"] has no description")
				}
				idx := len(out)
				out = append(out, sub)
				subDef, _ := def[name].(map[string]any)
				walk(key, f.Type, subDef, &sub)
				out[idx] = sub
			case f.Type.Kind() == reflect.Slice && isTable(f.Type.Elem()):
				sub := SectionDoc{Name: key, Description: secDescs[key]}
				used[key] = true
				if sub.Description == "" {
					problems = append(problems, "section [["+key+"]] has no description")
				}
				idx := len(out)
				out = append(out, sub)
				walk(key, f.Type.Elem(), nil, &sub)
				out[idx] = sub
			default:
				d := descs[key]
				used[key] = true
				if d == "" {
					problems = append(problems, "key "+key+" has no description")
				}
				kd := KeyDoc{Key: key, Section: sec.Name, Type: typeName(f.Type), Description: d}
				if v, ok := def[name]; ok {
					kd.Default = tomlValue(v)
				}
				sec.Keys = append(sec.Keys, kd)
			}
		}
	}
	walk("", reflect.TypeOf(Policy{}), raw, &top)
	for k := range descs {
		if !used[k] {
			problems = append(problems, "description for unknown key "+k)
		}
	}
	for k := range secDescs {
		if k != "" && !used[k] {
			problems = append(problems, "description for unknown section "+k)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("policy documentation out of date: %s", strings.Join(problems, "; "))
	}
	return append([]SectionDoc{top}, out...), nil
}

var textUnmarshaler = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()

// isTable reports whether t is decoded as a TOML table (a plain struct, not a
// scalar type with its own text syntax).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(textUnmarshaler)
}

// typeName describes the value syntax of a key's Go type.
func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(Duration{}):
		return "duration"
	case reflect.TypeOf(Amount{}):
		return "size or percentage"
	case reflect.TypeOf(Percent(0)):
		return "percentage"
	case reflect.TypeOf(CronSpec{}):
		return "schedule"
	case reflect.TypeOf(RefreshMode("")):
		return "notify | pull | off"
	case reflect.TypeOf(NewerLevel("")):
		return "off | patch | minor | major"
	case reflect.TypeOf(VerifyMode("")):
		return "report | untag | remove | off"
	case reflect.TypeOf(Urgency("")):
		return "low | normal | critical"
	case reflect.TypeOf([]DeferWork{}):
		return "list of \"pulls\" | \"integrity\""
	case reflect.TypeOf(Textfile("")):
		return "\"\" | \"auto\" | path"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.String:
		return "string"
	case reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

// tomlValue writes a decoded default value back in TOML syntax.
func tomlValue(v any) string {
	switch x := v.(type) {
	case string:
		return strconv.Quote(x)
	case []any:
		parts := make([]string, len(x))
		for i := range x {
			parts[i] = tomlValue(x[i])
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// sectionDescriptions explains each table; "" is the top level.
func sectionDescriptions() map[string]string {
	return map[string]string{
		"":        "Top-level keys.",
		"storage": "Which containers/storage store the jobs work on. Set keys are passed to podman as its --storage-driver, --root and --runroot flags; empty values are what the host's podman uses (podman info; storage.conf and the rootless or rootful defaults as podman applies them, or storage.conf as containers/storage reads it when podman is not installed). stowage info shows the result.",
		"schedule": "When the daemon runs each job. A schedule is a 5-field cron specification (\"0 3 * * *\") or a descriptor: @hourly, @daily, @weekly, @monthly or \"@every <duration>\". " +
			"Each slot runs once, at the slot plus a random delay below jitter, if the daemon is up then. The daemon exits when idle, but not while a run is in progress, queued or waiting for its catch-up, nor when a job's next start (delay included) is within its idle-exit time; stowage.timer starts it again every 15 minutes (Persistent=true, so also after downtime and suspend). " +
			"At each start the daemon catches up anacron-style: a job whose first slot after its baseline has passed runs once, however many slots were missed, after a fresh random delay below jitter, and the daemon stays up for it. The baseline is the later of the start of the job's last run (any outcome; dry runs do not count) and the moment the daemon first saw the job's current schedule, which is kept in the state database: a job that never ran is therefore caught up too, from its first slot after installation, and changing a schedule never triggers an immediate run. " +
			"A job never runs twice at once (a slot that comes while its run is still going is skipped), two storage-changing runs never overlap, and only one daemon may use a state directory.",
		"refresh":      "The refresh job compares each tagged image's digest with its registry (one HEAD request per tag, mirror-aware) and notifies about, or pulls, tags that drifted. For tags that look like versions it also reports newer versions (refresh.newer).",
		"refresh.rule": "Per-reference overrides of refresh.mode and refresh.newer (and pull_newer), as an array of tables ([[refresh.rule]]). The first rule whose glob matches an image reference wins.",
		"verify":       "The verify job re-evaluates every local image name against the signature policy (policy.json) and optionally re-hashes the layers.",
		"prune":        "The prune job removes images by quota, age and use, most reclaimable first, never an image a container uses, never a kept reference. A dry run prints the exact plan.",
		"volumes":      "The volumes job removes unused Podman volumes through podman's REST API; a volume in use is never removed.",
		"notify":       "Desktop notifications (user mode only; the system service emits D-Bus signals instead).",
		"metrics": "Prometheus metrics. The daemon serves them live on its control socket (GET /metrics) and, when stowage-metrics.socket is enabled, on 127.0.0.1:9647; since it exits when idle, it also writes them to a file for node_exporter's textfile collector after every run and at every start. " +
			"Every figure comes from the state database (each job's last run, its outcome, finish time and duration, the last report's figures, run counters kept across restarts), so the file stays meaningful while no daemon runs. Series carry the job in the label stowage_job (Prometheus reserves job for itself).",
	}
}

// keyDescriptions explains every key, by dotted path.
func keyDescriptions() map[string]string {
	return map[string]string{
		"version": "Policy schema version. Must be 1.",

		"storage.driver":    "Storage driver (overlay, vfs, ...), as podman --storage-driver. Empty: the driver podman uses.",
		"storage.graphroot": "Storage root directory, as podman --root. Empty: the graphroot podman uses.",
		"storage.runroot":   "Storage state directory, as podman --runroot. Empty: the runroot podman uses.",

		"schedule.refresh":     "Schedule of the refresh job.",
		"schedule.verify":      "Schedule of the verify job.",
		"schedule.prune":       "Schedule of the prune job.",
		"schedule.volumes":     "Schedule of the volumes job.",
		"schedule.jitter":      "Random delay added before each scheduled and each catch-up run, drawn anew for every run from [0, jitter), so that many hosts do not hit a registry at once. \"0\" disables it.",
		"schedule.run_timeout": "Longest time one job run may take; the daemon stops a worker still running after it. \"0\" means no limit.",
		"schedule.defer_on_metered": "Work the daemon's runs leave out while NetworkManager reports a metered connection (its Metered property is yes or guess-yes): \"pulls\" (refresh still checks every tag and reports drift, but pulls nothing, neither drifted tags nor pull_newer versions) and \"integrity\" (verify still checks signatures, but does not re-hash layers even with verify.integrity). " +
			"The run says what it left out and why in its summary and report (\"pulls deferred: metered connection\"). When the condition clears (the daemon follows NetworkManager's and UPower's PropertiesChanged signals on the system bus), a job whose last run left work out is run again (trigger manual) once the new conditions have held for a minute (stowage daemon --deferred-settle: a link coming up or NetworkManager restarting reads as unmetered for a moment) and does it; a daemon that exited idle meanwhile does so at its next start (stowage.timer starts it every 15 minutes), since the last run's report says what it left out. " +
			"It applies to every run the daemon starts (scheduled, catch-up, triggered); `stowage run JOB` by hand is never deferred. The daemon never starts NetworkManager or UPower to ask them (no D-Bus auto-start): without NetworkManager on the system bus the connection counts as not metered; a bus that cannot be reached is logged once and defers nothing. [] defers nothing; each value may appear once.",
		"schedule.defer_on_battery": "Work the daemon's runs leave out while UPower reports that the machine runs on battery (OnBattery): \"pulls\" and/or \"integrity\", as schedule.defer_on_metered. Without UPower on the system bus the machine counts as on mains power. The default defers pulls only: an integrity scan is off by default (verify.integrity) and, once enabled, is what the administrator asked for.",

		"refresh.mode":            "What to do with a tag whose registry digest changed: notify (report only), pull (pull the new image), off (skip the job).",
		"refresh.concurrency":     "Maximum registry requests in flight in one run.",
		"refresh.per_registry":    "Maximum requests in flight to one registry host.",
		"refresh.rate":            "Requests per second to one registry host in one run; 0 = unpaced. Pacing spreads each host's run over time so that a fleet's runs, already spread by the schedule's jitter, do not reach the registry as bursts: with the default 10/s a run of 50 tags takes about 5 s, and a fleet's peak second stays well within twice its mean (see the README's Fleets section).",
		"refresh.timeout":         "Timeout of one registry request.",
		"refresh.budget":          "Maximum requests sent to one registry host in one run; tags beyond it are reported as skipped. 0 means no cap.",
		"refresh.rule.match":      "Reference glob the rule applies to, e.g. \"docker.io/library/*\" or \"alpine:3.*\". A reference glob (path.Match syntax: * and ? do not cross \"/\") matches an image reference when it matches the full reference (docker.io/library/alpine:3.19), its repository without tag or digest (docker.io/library/alpine), the familiar short form (alpine:3.19) or the familiar repository (alpine); so \"alpine\", \"alpine:3.*\" and \"docker.io/library/*\" all match docker.io/library/alpine:3.19, a glob without a tag matches every tag, and only Docker Hub names have a short form (\"*\" matches Docker Hub official images, not quay.io/org/img). The same meaning as prune.keep.",
		"refresh.rule.mode":       "Refresh mode for matching references: notify, pull or off.",
		"refresh.rule.newer":      "Overrides refresh.newer for matching references (off, patch, minor or major); unset keeps refresh.newer.",
		"refresh.rule.pull_newer": "Also pull the newer version found for a matching reference, as NAME:NEWTAG beside the old tag (which is never removed nor moved; prune treats the old image as usual). Needs mode = \"pull\" in the same rule; the signature policy is enforced as for any pull; dry runs pull nothing.",
		"refresh.newer": "Report newer versions of the checked tags (mode not off) that look like versions (an optional v, one to three numbers, an optional suffix: 1.25, v2.1.3, 1.25.3-alpine). " +
			"A newer version is looked for in the same track only: the same v prefix, the same number of numeric parts and the same suffix, so 1.25 is compared with 1.26 but not with 1.25.4 or 1.26-alpine. " +
			"patch reports a newer patch in the same minor (1.25.3 → 1.25.4; a two-part tag has no patch), minor also newer minors in the same major (1.25 → 1.27; a one-part tag such as 16 has no minor), major any newer version (1.25 → 2.0); off disables it. " +
			"Pre-release tags (a suffix starting with -alpha, -beta, -rc, -pre, -dev or -preview, optionally numbered) are never reported for a release tag, only for a pre-release tag of the same track. " +
			"Each repository with such a tag costs one tag listing per run (GET /v2/NAME/tags/list, following the registry's pagination, at most 20 pages), made after the digest checks and counted against refresh.budget (a tag that can have no newer version at its level, such as 16 under minor, costs none); when the budget left cannot pay for every listing, the repositories listed least recently go first, so they take turns across runs; " +
			"several local tags of one repository share it. Each newer version is reported once per local reference. pull mode never pulls a newer version unless a [[refresh.rule]] sets pull_newer. " +
			"The default is minor: one listing per repository and run is cheap next to the per-tag HEADs, and registries' pull-rate limits count manifest GETs, not tag listings; minor updates are the ones a tag like 1.25 is meant to stay compatible with, while major updates usually need a human.",
		"refresh.newer_tags":    "Tag globs (path.Match syntax, on the tag alone) that take part in the newer-version check, locally and in the registry's listing. Empty: every version-like tag.",
		"refresh.newer_exclude": "Tag globs never checked nor reported as newer versions, e.g. \"*-windows*\".",

		"verify.mode":           "What to do with an image name that fails the signature policy: report, untag (remove that name), remove (remove the image when no name passes) or off.",
		"verify.policy_json":    "Signature policy file. Empty: the containers default lookup ($HOME/.config/containers/policy.json, then /etc/containers/policy.json).",
		"verify.integrity":      "Also re-hash every layer against its recorded digest. Slow and I/O-bound.",
		"verify.integrity_rate": "Read rate cap of the integrity scan in bytes per second (\"200MiB\"). \"0\" means no cap.",

		"prune.enabled":        "Whether the prune job removes anything.",
		"prune.quota":          "Storage quota: a size (\"20GiB\") or a percentage of the filesystem holding the graphroot (\"25%\"). \"0\" means no quota. Usage is what the store's layers, images and containers take on disk (allocated blocks, as stowage df shows), not the store's diff sizes. A user's disk quota (ext4 or xfs user quota) on that filesystem applies as well, whatever this is: its soft limit (its hard limit when there is no soft one) is the limit when it is lower, and the watermarks apply to the usage the quota tools report. It is read as the user, outside the rootless user namespace; a quota that cannot be read is logged and applies no pressure.",
		"prune.high_watermark": "Pruning for the quota starts when usage exceeds this share of the quota.",
		"prune.low_watermark":  "Pruning for the quota stops when usage drops below this share of the quota.",
		"prune.min_free":       "Prune until at least this much of the graphroot filesystem is free: a size or a percentage.",
		"prune.min_age":        "Never remove an image younger than this (by its local creation time).",
		"prune.unused_for":     "Also remove images no container has used for this long. \"0\" disables it.",
		"prune.keep":           "Reference globs never pruned, e.g. \"registry.example.com/base/*\" or \"alpine\". A reference glob (path.Match syntax: * and ? do not cross \"/\") matches an image reference when it matches the full reference (docker.io/library/alpine:3.19), its repository without tag or digest (docker.io/library/alpine), the familiar short form (alpine:3.19) or the familiar repository (alpine); so \"alpine\", \"alpine:3.*\" and \"docker.io/library/*\" all match docker.io/library/alpine:3.19, a glob without a tag matches every tag, and only Docker Hub names have a short form (\"*\" matches Docker Hub official images, not quay.io/org/img). The same meaning as refresh.rule.match.",
		"prune.keep_last":      "Number of most recent images kept per repository.",
		"prune.dangling":       "Remove dangling images (no name and no child image).",
		"prune.orphan_layers":  "Remove layers no image or container refers to.",

		"volumes.enabled":        "Whether the volumes job removes anything.",
		"volumes.anonymous_only": "Only remove anonymous volumes (those podman named with a random hex ID).",
		"volumes.min_age":        "Never remove a volume younger than this.",
		"volumes.keep_labels":    "Volumes carrying any of these labels are never removed.",
		"volumes.keep":           "Volume name globs never removed.",
		"volumes.include":        "Named-volume globs that may be removed although anonymous_only is set.",
		"volumes.podman_socket":  "Podman API socket. Empty: $XDG_RUNTIME_DIR/podman/podman.sock in user mode, /run/podman/podman.sock in system mode.",

		"notify.desktop":     "Send desktop notifications (user mode).",
		"notify.min_urgency": "Lowest urgency that is sent as a desktop notification: low, normal or critical.",
		"notify.topics": "Notification topics shown; [] shows every topic. An entry is a topic family — refresh (drift of a reference), refresh-newer (a newer version), verify (a reference's signature), verify-image (an image's integrity), prune-quota, volumes — or a glob (path.Match) over full topics, which name the reference after the family: refresh:docker.io/library/*. " +
			"Set in a user's own policy it chooses what the session agent of the system service shows that user.",

		"metrics.textfile": "File the metrics are written to (atomically: a temporary file in the same directory, fsync, rename; mode 0644) after every run and at every daemon start. \"\" writes none. " +
			"\"auto\": in system mode /var/lib/prometheus/node-exporter/stowage.prom, the directory Debian's prometheus-node-exporter reads *.prom files from, when that directory exists (it is never created; without it no file is written); in user mode no file, since no node exporter reads a user's directories and a file nobody collects is only writes. " +
			"Otherwise an absolute path ending in .prom, in a directory that exists; the system service may write there only if it is /var/lib/prometheus/node-exporter or made writable with a ReadWritePaths= drop-in (the unit is ProtectSystem=strict). The series carry no user or mode label: two daemons (the system one and a user's) writing into the directory one node exporter reads would export the same series twice, which the node exporter refuses; give a user daemon a collector of its own.",
	}
}
