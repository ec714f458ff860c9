// Package jobenv is the job contract's run half: the environment one job run
// gets and the Runner each job package exposes. `stowage run JOB` (the
// worker the daemon starts, or a person) builds one Env and hands it to the
// job's Runner (each job package exposes its Job: descriptor and Runner); the light half, what the daemon knows about a
// job without linking it, is jobs/shared/jobspec.
package jobenv

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/pflag"
	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/clock"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/policy"
)

// Env is everything a job run gets, built once per run by the command. The
// store, state database and podman connection are opened on demand: which
// of them a run needs, and how (in the user namespace, with a podman
// service started for it), depends on the job, its flags and the policy.
type Env struct {
	// Policy is the effective policy (the daemon's snapshot in a worker).
	Policy *policy.Policy
	// DryRun: plan and report, change nothing.
	DryRun bool
	// System: the command addresses the system-wide store and files.
	System bool
	Log    *slog.Logger
	// Clock is the run's clock (clock.Real).
	Clock clock.Clock
	// Progress receives progress lines: stderr when the report is printed
	// as text and stderr is a terminal, else nil.
	Progress io.Writer
	// OpenStore resolves and opens the store the host's podman uses. With
	// req.UserNamespace a rootless process first re-executes itself inside
	// the user namespace (OpenStore returns only there). The caller closes
	// the store (storeopen.Close).
	OpenStore func(ctx context.Context, req StoreRequest) (*Store, error)
	// State opens the state database.
	State func() (*state.DB, error)
	// Podman connects to podman's API for the store the run addresses.
	Podman func(ctx context.Context, req PodmanRequest) (*podmanapi.Conn, error)
	// PodmanArgs are the global podman flags for the store settings the
	// user chose, for running the podman command itself.
	PodmanArgs []string
}

// StoreRequest says how to open the store.
type StoreRequest struct {
	// UserNamespace: the run writes to the store or reads files only the
	// namespace's ids can (jobspec.Descriptor.UserNamespace).
	UserNamespace bool
	// Quota: in user scope, also read the user's disk quota on the
	// graphroot's filesystem (before entering the namespace).
	Quota bool
}

// Store is an open store with the options it was opened with.
type Store struct {
	storage.Store
	Options types.StoreOptions
	// Quota is the disk quota reading (nil: not asked for, or system scope).
	Quota *quota.Reading
}

// PodmanRequest says which podman API to connect to.
type PodmanRequest struct {
	// Socket is the API socket to use; "" means [volumes] podman_socket,
	// else podman's default one (podmanapi.DefaultSockets) when it serves
	// the same store.
	Socket string
	// MayStart starts a private `podman system service` when none answers.
	MayStart bool
	// Timeout bounds the connection's requests (0: none).
	Timeout time.Duration
}

// Output is a finished run's report.
type Output struct {
	// Report is printed as JSON with --format json (what the daemon reads).
	Report any
	// Text prints the report for people.
	Text func(w io.Writer) error
}

// RunFunc runs the job once. A non-nil Output is printed even when the
// error is not nil: the run reported, and still failed (exit status 1).
type RunFunc func(ctx context.Context, env *Env) (*Output, error)

// Job is one job as the command line registers it (one line a job, in
// cmd/stowage): its light descriptor, which the daemon reads, and its run
// side.
type Job struct {
	// Spec is the job's descriptor (its name is the subcommand).
	Spec jobspec.Descriptor
	// Runner runs it.
	Runner Runner
}

// Runner is a job's run side.
type Runner struct {
	// Short and Long are the command's help.
	Short, Long string
	// TextFormat names the human --format ("text" when empty).
	TextFormat string
	// DryRunHelp describes --dry-run for this job.
	DryRunHelp string
	// Command registers the job's own flags on fs and returns the run
	// function that reads them.
	Command func(fs *pflag.FlagSet) RunFunc
}
