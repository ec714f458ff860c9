package policy

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/robfig/cron/v3"
)

// Duration is a time.Duration written as a Go duration string ("24h", "15m");
// "0" means zero (off).
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "0" {
		d.Duration = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\", \"15m\", \"24h\")", s)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in Go syntax.
func (d Duration) MarshalText() ([]byte, error) {
	if d.Duration == 0 {
		return []byte("0"), nil
	}
	return []byte(d.Duration.String()), nil
}

// Percent is a percentage in [0,100], written "90%".
type Percent float64

// UnmarshalText parses "NN%" or "NN.N%".
func (p *Percent) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if !strings.HasSuffix(s, "%") {
		return fmt.Errorf("invalid percentage %q (want e.g. \"80%%\")", s)
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
		return fmt.Errorf("invalid percentage %q (want 0%% to 100%%)", s)
	}
	*p = Percent(v)
	return nil
}

// MarshalText writes the percentage with a % sign.
func (p Percent) MarshalText() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"), nil
}

// Of returns p percent of total bytes, rounded down.
func (p Percent) Of(total int64) int64 { return int64(float64(total) * float64(p) / 100) }

// Amount is either an absolute size in bytes ("20GiB", "500MB", "0") or a
// percentage of the filesystem that holds the graphroot ("25%").
type Amount struct {
	Bytes     int64
	Percent   Percent
	IsPercent bool
}

// UnmarshalText parses a size with a binary or decimal unit, or a percentage.
func (a *Amount) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if strings.HasSuffix(s, "%") {
		var p Percent
		if err := p.UnmarshalText([]byte(s)); err != nil {
			return err
		}
		*a = Amount{Percent: p, IsPercent: true}
		return nil
	}
	// Binary units (KiB, MiB, GiB, TiB) are powers of 1024; decimal ones
	// (kB, MB, GB, TB) powers of 1000, as podman prints them.
	parse := units.FromHumanSize
	if strings.Contains(strings.ToLower(s), "i") {
		parse = units.RAMInBytes
	}
	v, err := parse(s)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid size %q (want bytes like \"20GiB\", \"500MB\", or a percentage like \"25%%\")", s)
	}
	*a = Amount{Bytes: v}
	return nil
}

// MarshalText writes the amount back in a form UnmarshalText accepts.
func (a Amount) MarshalText() ([]byte, error) {
	if a.IsPercent {
		return a.Percent.MarshalText()
	}
	return []byte(strconv.FormatInt(a.Bytes, 10)), nil
}

// IsZero reports whether the amount is "0" (no limit).
func (a Amount) IsZero() bool { return !a.IsPercent && a.Bytes == 0 || a.IsPercent && a.Percent == 0 }

// Resolve returns the amount in bytes given the filesystem size.
func (a Amount) Resolve(fsSize int64) int64 {
	if a.IsPercent {
		return a.Percent.Of(fsSize)
	}
	return a.Bytes
}

// cronParser parses the schedule syntax the policy accepts: 5-field cron and
// descriptors (@hourly, @daily, @weekly, @every <duration>).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses a schedule specification.
func ParseCron(spec string) (cron.Schedule, error) { return cronParser.Parse(spec) }

// CronSpec is a validated cron specification.
type CronSpec struct {
	Spec  string
	Sched cron.Schedule
}

// UnmarshalText validates the specification with robfig/cron.
func (c *CronSpec) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	sch, err := ParseCron(s)
	if err != nil {
		return fmt.Errorf("invalid schedule %q: %v (want 5-field cron or @hourly/@daily/@weekly/@every <duration>)", s, err)
	}
	*c = CronSpec{Spec: s, Sched: sch}
	return nil
}

// MarshalText writes the original specification.
func (c CronSpec) MarshalText() ([]byte, error) { return []byte(c.Spec), nil }

// RefreshMode says what the refresh job does with a drifted tag.
type RefreshMode string

// Refresh modes.
const (
	RefreshNotify RefreshMode = "notify"
	RefreshPull   RefreshMode = "pull"
	RefreshOff    RefreshMode = "off"
)

// UnmarshalText accepts notify, pull or off.
func (m *RefreshMode) UnmarshalText(b []byte) error {
	switch v := RefreshMode(b); v {
	case RefreshNotify, RefreshPull, RefreshOff:
		*m = v
		return nil
	}
	return fmt.Errorf("invalid refresh mode %q (want notify, pull or off)", string(b))
}

// NewerLevel says which newer versions of a version-like tag the refresh
// job reports.
type NewerLevel string

// Newer-version levels, narrowest first.
const (
	NewerOff   NewerLevel = "off"
	NewerPatch NewerLevel = "patch"
	NewerMinor NewerLevel = "minor"
	NewerMajor NewerLevel = "major"
)

// UnmarshalText accepts off, patch, minor or major.
func (l *NewerLevel) UnmarshalText(b []byte) error {
	switch v := NewerLevel(b); v {
	case NewerOff, NewerPatch, NewerMinor, NewerMajor:
		*l = v
		return nil
	}
	return fmt.Errorf("invalid newer level %q (want off, patch, minor or major)", string(b))
}

// VerifyMode says what the verify job does with a name that fails the policy.
type VerifyMode string

// Verify modes.
const (
	VerifyReport VerifyMode = "report"
	VerifyUntag  VerifyMode = "untag"
	VerifyRemove VerifyMode = "remove"
	VerifyOff    VerifyMode = "off"
)

// UnmarshalText accepts report, untag, remove or off.
func (m *VerifyMode) UnmarshalText(b []byte) error {
	switch v := VerifyMode(b); v {
	case VerifyReport, VerifyUntag, VerifyRemove, VerifyOff:
		*m = v
		return nil
	}
	return fmt.Errorf("invalid verify mode %q (want report, untag, remove or off)", string(b))
}

// Urgency is a desktop notification urgency level.
type Urgency string

// Urgency levels, lowest first.
const (
	UrgencyLow      Urgency = "low"
	UrgencyNormal   Urgency = "normal"
	UrgencyCritical Urgency = "critical"
)

// Level returns the freedesktop urgency byte (0 low, 1 normal, 2 critical).
func (u Urgency) Level() byte {
	switch u {
	case UrgencyLow:
		return 0
	case UrgencyCritical:
		return 2
	}
	return 1
}

// UnmarshalText accepts low, normal or critical.
func (u *Urgency) UnmarshalText(b []byte) error {
	switch v := Urgency(b); v {
	case UrgencyLow, UrgencyNormal, UrgencyCritical:
		*u = v
		return nil
	}
	return fmt.Errorf("invalid urgency %q (want low, normal or critical)", string(b))
}

// Textfile is where the daemon writes its metrics for node_exporter's
// textfile collector: "" (off), "auto" or an absolute path ending in .prom.
type Textfile string

// TextfileAuto picks the node exporter's directory when it exists (system
// mode); see the key's documentation.
const TextfileAuto Textfile = "auto"

// UnmarshalText accepts "", "auto" or a clean absolute path ending in .prom
// (the collector reads only *.prom files).
func (t *Textfile) UnmarshalText(b []byte) error {
	v := string(b)
	switch {
	case v == "" || Textfile(v) == TextfileAuto:
	case !filepath.IsAbs(v) || filepath.Clean(v) != v:
		return fmt.Errorf("invalid textfile %q (want \"\", \"auto\" or a clean absolute path)", v)
	case filepath.Ext(v) != ".prom" || filepath.Base(v) == ".prom":
		return fmt.Errorf("invalid textfile %q: the node exporter reads only files named *.prom", v)
	}
	*t = Textfile(v)
	return nil
}

// DeferWork names a part of a job run that can wait for a cheaper moment
// (an unmetered connection, mains power).
type DeferWork string

// Deferrable work.
const (
	// DeferPulls: refresh pulls nothing (it still checks and reports drift).
	DeferPulls DeferWork = "pulls"
	// DeferIntegrity: verify does not re-hash layers (it still verifies
	// signatures).
	DeferIntegrity DeferWork = "integrity"
)

// UnmarshalText accepts pulls or integrity.
func (w *DeferWork) UnmarshalText(b []byte) error {
	switch v := DeferWork(b); v {
	case DeferPulls, DeferIntegrity:
		*w = v
		return nil
	}
	return fmt.Errorf("invalid deferrable work %q (want \"pulls\" or \"integrity\")", string(b))
}
