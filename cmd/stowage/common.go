package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/unshare"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/state"
	"github.com/stowage/stowage/jobs/storeopen"
	"github.com/stowage/stowage/policy"
)

// systemScope reports whether the command addresses the system-wide service
// and files (root by default, --user/--system to force).
func (g *globals) systemScope() bool {
	switch {
	case g.systemMode:
		return true
	case g.userMode:
		return false
	}
	// Inside the rootless user namespace we are uid 0 but still the user.
	return os.Geteuid() == 0 && !unshare.IsRootless() && unshare.GetRootlessUID() <= 0
}

// policySnapshotEnv carries the daemon's policy snapshot from a worker into
// its own re-execution inside the rootless user namespace, which inherits
// the environment but no extra file descriptors.
const policySnapshotEnv = "_STOWAGE_POLICY_SNAPSHOT"

// maxSnapshotEnv keeps the variable well below the kernel's 128 KiB limit
// for one environment string.
const maxSnapshotEnv = 96 << 10

// loadPolicy loads the effective policy (file, drop-ins, embedded default),
// or, in a worker the daemon started (--policy-fd), the daemon's snapshot:
// then no policy file is read at all.
func (g *globals) loadPolicy() (*policy.Policy, error) {
	if g.policyFD > 0 || os.Getenv(policySnapshotEnv) != "" {
		s, err := g.policySnapshot()
		if err != nil {
			return nil, fmt.Errorf("policy from the daemon: %w", err)
		}
		return s.Policy, nil
	}
	p, _, err := policy.Load(policy.LoadOptions{Path: g.policyPath, System: g.systemScope()})
	if err != nil {
		return nil, fmt.Errorf("policy:\n%w", err)
	}
	return p, nil
}

// policySnapshot reads the snapshot from --policy-fd once and keeps it in
// the environment for a re-execution into the user namespace.
func (g *globals) policySnapshot() (*policy.Snapshot, error) {
	if env := os.Getenv(policySnapshotEnv); env != "" {
		return policy.DecodeSnapshot([]byte(env))
	}
	if os.Getenv("_CONTAINERS_USERNS_CONFIGURED") != "" {
		// Re-executed: the descriptor number now belongs to someone else.
		return nil, fmt.Errorf("the snapshot did not reach the user namespace (policy files larger than %d KiB?)", maxSnapshotEnv>>10)
	}
	f := os.NewFile(uintptr(g.policyFD), "policy-fd")
	if f == nil {
		return nil, fmt.Errorf("--policy-fd %d: not an open descriptor", g.policyFD)
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("reading --policy-fd %d: %w", g.policyFD, err)
	}
	s, err := policy.DecodeSnapshot(data)
	if err != nil {
		return nil, err
	}
	if len(data) <= maxSnapshotEnv {
		if err := os.Setenv(policySnapshotEnv, string(data)); err != nil {
			return nil, fmt.Errorf("keeping the policy snapshot: %w", err)
		}
	}
	return s, nil
}

// storeOptions resolves the store like podman: flags, then the policy's
// [storage] table, then storage.conf.
func (g *globals) storeOptions(p *policy.Policy) (types.StoreOptions, error) {
	o := g.store.Merge(storeopen.Options{
		GraphRoot: p.Storage.GraphRoot,
		RunRoot:   p.Storage.RunRoot,
		Driver:    p.Storage.Driver,
	})
	return storeopen.Resolve(o)
}

// openStore resolves the options, enters the rootless user namespace when
// needed (re-executing this process, as buildah does) and opens the store.
func (g *globals) openStore(p *policy.Policy, willDelete bool) (storage.Store, types.StoreOptions, error) {
	so, err := g.storeOptions(p)
	if err != nil {
		return nil, so, err
	}
	if storeopen.NeedsUserNamespace(so, willDelete) {
		storeopen.EnterUserNamespace() // returns only inside the namespace
	}
	st, err := storeopen.Open(so)
	return st, so, err
}

// stateDB opens the persistent state (--state-dir or the default).
func (g *globals) stateDB() (*state.DB, error) {
	dir := g.stateDir
	if dir == "" {
		var err error
		if dir, err = state.DefaultDir(g.systemScope()); err != nil {
			return nil, err
		}
	}
	return state.Open(dir)
}

// logger writes text logs to stderr at the --log-level.
func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	return nil
}
