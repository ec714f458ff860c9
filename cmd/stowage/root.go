package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/storeopen"
)

// globals are the flags every command shares.
type globals struct {
	store      storeopen.Options
	policyPath string
	// policyFD is the hidden --policy-fd: the daemon's policy snapshot
	// for a worker (see worker.Spawner.Policy).
	policyFD int
	// runLock is the job's run lock, held for the life of `stowage run`.
	runLock    *os.File
	stateDir   string
	userMode   bool // --user
	systemMode bool // --system
	logLevel   string
	logFormat  string // --log-format: text or json
	// handoff is the store the parent process resolved, when this process
	// was re-executed inside the rootless user namespace.
	handoff *storeopen.Handoff
	// jobs are the registered jobs' descriptors (allJobs), for the daemon,
	// its adapters and the client commands.
	jobs jobspec.Registry
}

// newRootCmd builds the command tree; handoff is storeopen.TakeHandoff's
// result (nil outside the rootless user namespace child).
func newRootCmd(handoff *storeopen.Handoff) *cobra.Command {
	return newRootCmdJobs(handoff, allJobs())
}

// newRootCmdJobs is newRootCmd with jobs as `stowage run`'s jobs.
func newRootCmdJobs(handoff *storeopen.Handoff, jobs []jobenv.Job) *cobra.Command {
	g := &globals{handoff: handoff, jobs: registryOf(jobs)}
	root := &cobra.Command{
		Use:           "stowage",
		Short:         "Keep a Podman host's container storage fresh, trusted and lean",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	f := root.PersistentFlags()
	f.StringVar(&g.store.GraphRoot, "root", "", "path to the storage root directory (as podman --root)")
	f.StringVar(&g.store.RunRoot, "runroot", "", "path to the storage state directory (as podman --runroot)")
	f.StringVar(&g.store.Driver, "storage-driver", "", "storage driver (as podman --storage-driver)")
	f.StringArrayVar(&g.store.DriverOpts, "storage-opt", nil, "storage driver option, repeatable (as podman --storage-opt)")
	f.StringVar(&g.policyPath, "policy", "", "policy file (default: $XDG_CONFIG_HOME/stowage/stowage.toml or /etc/stowage/stowage.toml)")
	f.IntVar(&g.policyFD, "policy-fd", 0, "read the policy snapshot from this descriptor instead of any file (set by the daemon for its workers)")
	_ = f.MarkHidden("policy-fd")
	f.StringVar(&g.stateDir, "state-dir", "", "state directory (default: $XDG_STATE_HOME/stowage or /var/lib/stowage)")
	f.BoolVar(&g.userMode, "user", false, "address the per-user service (default as non-root)")
	f.BoolVar(&g.systemMode, "system", false, "address the system-wide service (default as root)")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text, or json (one record a line; the daemon asks its workers for it and itself logs to the journal)")
	root.MarkFlagsMutuallyExclusive("user", "system")
	// `stowage run` has its own hook, which checks the format too.
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return g.checkLogFormat() }

	root.AddCommand(newPolicyCmd(g), newDfCmd(g), newImagesCmd(g), newRunCmd(g, jobs), newHistoryCmd(g), newInfoCmd(g), newQuadletCmd(g))
	root.AddCommand(newPinCmds(g)...)
	root.AddCommand(newNotifyCmd(g))
	root.AddCommand(newDaemonCmds(g)...)
	root.AddCommand(newAgentCmd(g))
	root.AddCommand(newGenDocsCmd(root))
	return root
}

// checkLogFormat rejects a --log-format other than text or json.
func (g *globals) checkLogFormat() error {
	if g.logFormat != "text" && g.logFormat != "json" {
		return fmt.Errorf("invalid --log-format %q (want text or json)", g.logFormat)
	}
	return nil
}

// version is set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"
