package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/unshare"
	"go.podman.io/storage/types"

	"github.com/stowage/stowage/jobs/shared/quota"
	"github.com/stowage/stowage/jobs/shared/state"
	"github.com/stowage/stowage/jobs/shared/storeopen"
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

// storeOverrides are the user's store settings: flags, then the policy's
// [storage] table. Nothing else is passed to podman.
func (g *globals) storeOverrides(p *policy.Policy) storeopen.Options {
	return g.store.Merge(storeopen.Options{
		GraphRoot: p.Storage.GraphRoot,
		RunRoot:   p.Storage.RunRoot,
		Driver:    p.Storage.Driver,
	})
}

// resolveStore resolves the store the host's podman uses with the user's
// overrides. Inside the rootless user namespace it returns what the parent
// process resolved (podman is not asked again).
func (g *globals) resolveStore(ctx context.Context, p *policy.Policy) (storeopen.Resolution, error) {
	o := g.storeOverrides(p)
	if g.handoff != nil {
		res, err := g.handoff.Resolution(o)
		if err == nil {
			g.logger().Debug("store handed over by the parent process", "graphroot", res.Options.GraphRoot, "driver", res.Options.GraphDriverName)
		}
		return res, err
	}
	res, err := storeopen.Resolve(ctx, o)
	if err == nil {
		g.logger().Debug("store resolved", "source", res.Source, "podman", res.PodmanVersion, "cached", res.Cached,
			"graphroot", res.Options.GraphRoot, "runroot", res.Options.RunRoot, "driver", res.Options.GraphDriverName)
	}
	return res, err
}

// storeOptions resolves the store (see resolveStore).
func (g *globals) storeOptions(ctx context.Context, p *policy.Policy) (types.StoreOptions, error) {
	res, err := g.resolveStore(ctx, p)
	return res.Options, err
}

// openStore resolves the options, enters the rootless user namespace when
// needed (re-executing this process, as buildah does, with the resolved
// store handed on) and opens the store.
func (g *globals) openStore(ctx context.Context, p *policy.Policy, willDelete bool) (storage.Store, types.StoreOptions, error) {
	st, so, _, err := g.openStoreQuota(ctx, p, willDelete, false)
	return st, so, err
}

// openStoreQuota is openStore that, with withQuota in user scope, also
// reads the user's disk quota on the graphroot's filesystem: before
// entering the user namespace, as the real uid (the kernel may refuse the
// query from inside), handing the reading on to the re-executed process.
// The reading is nil in system scope (root's store: root is exempt from
// quota limits) or without withQuota.
func (g *globals) openStoreQuota(ctx context.Context, p *policy.Policy, willDelete, withQuota bool) (storage.Store, types.StoreOptions, *quota.Reading, error) {
	res, err := g.resolveStore(ctx, p)
	if err != nil {
		return nil, res.Options, nil, err
	}
	return g.openResolved(ctx, p, res, willDelete, withQuota)
}

// openResolved is openStoreQuota on a store already resolved.
func (g *globals) openResolved(ctx context.Context, p *policy.Policy, res storeopen.Resolution, willDelete, withQuota bool) (storage.Store, types.StoreOptions, *quota.Reading, error) {
	so := res.Options
	var q *quota.Reading
	if withQuota && !g.systemScope() {
		q = g.readQuota(so.GraphRoot)
	}
	if storeopen.NeedsUserNamespace(so, willDelete) {
		// Returns only inside the namespace.
		if err := storeopen.EnterUserNamespace(g.storeOverrides(p), res, q); err != nil {
			return nil, so, nil, err
		}
	}
	st, err := storeopen.Open(so)
	return st, so, q, err
}

// readQuota reads the user's disk quota on graphRoot's filesystem, or in
// the process re-executed inside the user namespace takes the reading the
// parent handed over (checked against the kernel's uid map). A reading
// that cannot be had is an error reading: reported, never acted on.
func (g *globals) readQuota(graphRoot string) *quota.Reading {
	if g.handoff != nil {
		q, err := g.handoff.Quota(graphRoot)
		if err != nil {
			return &quota.Reading{Path: graphRoot, UID: os.Getuid(), Err: err.Error()}
		}
		g.logger().Debug("disk quota handed over by the parent process", "uid", q.UID, "path", q.Path)
		return q
	}
	// The uid as this process sees it: quotactl maps it through our user
	// namespace (the real uid outside any).
	q := quota.Read(graphRoot, os.Getuid())
	return &q
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

// logger writes logs to stderr at the --log-level: text for a person, or
// with --log-format json one JSON record a line, which the daemon re-emits
// to the journal with its level and attributes as fields.
func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: lvl}
	if g.logFormat == "json" {
		// Durations as "1.5s", as the text handler and the journal show
		// them, not slog's nanosecond integers.
		o.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(os.Stderr, o))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, o))
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
