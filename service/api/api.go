// Package api holds the wire types of the daemon's control API (HTTP/JSON on
// a unix socket, versioned under /v1) and the socket's default location. It
// is shared by the daemon and its clients and imports nothing heavy.
package api

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
)

// Outcome is how a run ended.
type Outcome string

// Run outcomes.
const (
	OutcomeQueued    Outcome = "queued"
	OutcomeRunning   Outcome = "running"
	OutcomeSucceeded Outcome = "succeeded"
	OutcomeFailed    Outcome = "failed"
	OutcomeTimedOut  Outcome = "timed_out"
	OutcomeCanceled  Outcome = "canceled"
)

// Done reports whether the run has ended.
func (o Outcome) Done() bool {
	return o != OutcomeQueued && o != OutcomeRunning && o != ""
}

// Trigger says why a run started.
type Trigger string

// Triggers.
const (
	TriggerSchedule Trigger = "schedule"
	TriggerCatchUp  Trigger = "catch-up"
	TriggerManual   Trigger = "manual"
)

// Run is one job run as the daemon records it.
type Run struct {
	ID      string  `json:"id"`
	Job     string  `json:"job"`
	DryRun  bool    `json:"dry_run"`
	Trigger Trigger `json:"trigger"`
	// Args are the job's own arguments (refresh --pull REF from a
	// notification's "Pull update").
	Args     []string  `json:"args,omitempty"`
	Queued   time.Time `json:"queued"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Outcome  Outcome   `json:"outcome"`
	// Error says why a run failed (exit status, stderr tail, timeout).
	Error   string `json:"error,omitempty"`
	Summary string `json:"summary,omitempty"`
	// ExitCode is the worker's exit status (-1 when killed by a signal).
	ExitCode int `json:"exit_code"`
	// Report is the worker's full JSON report (the envelope plus the job's own
	// fields), absent when the worker printed none.
	Report json.RawMessage `json:"report,omitempty"`
	// Common is the parsed envelope of Report.
	Common *report.Common `json:"-"`
}

// Duration is how long the run took (0 while it runs).
func (r *Run) Duration() time.Duration {
	if r.Started.IsZero() || r.Finished.IsZero() {
		return 0
	}
	return r.Finished.Sub(r.Started)
}

// Job describes one scheduled job.
type Job struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	// Mutating jobs change storage under the current policy; two never run
	// at once.
	Mutating bool      `json:"mutating"`
	Next     time.Time `json:"next_run,omitzero"`
	Running  string    `json:"running,omitempty"` // run id
	Queued   int       `json:"queued,omitempty"`
	LastRun  *Run      `json:"last_run,omitempty"`
}

// Status is the daemon's state.
type Status struct {
	Version string    `json:"version"`
	Mode    string    `json:"mode"` // "user" or "system"
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	State   string    `json:"state"` // "idle" or "running"
	// PolicyPath is the main policy file in force (the embedded default
	// when there is none); PolicyFiles lists every source in force, in the
	// order they apply: the embedded default, the file, its drop-ins.
	PolicyPath  string    `json:"policy_path,omitempty"`
	PolicyFiles []string  `json:"policy_files,omitempty"`
	PolicyError string    `json:"policy_error,omitempty"`
	PolicyLoad  time.Time `json:"policy_loaded"`
	// StateError says why the state database (pins, last-use records,
	// schedule baselines) cannot be used; the jobs that need it fail until
	// it is fixed. Empty when it is fine.
	StateError string   `json:"state_error,omitempty"`
	Bus        string   `json:"bus,omitempty"` // bus state, e.g. "none: ..."
	Running    []string `json:"running,omitempty"`
	Jobs       []Job    `json:"jobs"`
}

// TriggerRequest asks for a run now.
type TriggerRequest struct {
	DryRun bool `json:"dry_run"`
}

// ReloadResult says whether a reload took effect.
type ReloadResult struct {
	OK bool `json:"ok"`
	// Error is the policy error; the previous policy stays in force.
	Error string `json:"error,omitempty"`
}

// Error is the body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
}

// SocketName is the control socket's file name.
const SocketName = "stowage.sock"

// SocketPath returns the default control socket: /run/stowage/stowage.sock
// for the system service, $XDG_RUNTIME_DIR/stowage/stowage.sock for a user.
func SocketPath(system bool) (string, error) {
	if system {
		return filepath.Join("/run/stowage", SocketName), nil
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		return "", errors.New("XDG_RUNTIME_DIR is not set: cannot locate the user's control socket (use --system or set it)")
	}
	return filepath.Join(dir, "stowage", SocketName), nil
}
