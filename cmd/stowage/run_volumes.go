package main

import (
	"context"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/policy"
)

// podmanConn connects to podman's API (see podmanConnectOptions), starting a
// private `podman system service` when none answers and mayStart is set.
func (g *globals) podmanConn(ctx context.Context, p *policy.Policy, mayStart bool) (*podmanapi.Conn, error) {
	o := g.podmanConnectOptions(ctx, p, "")
	o.NoStart = !mayStart
	o.Timeout = p.Schedule.RunTimeout.Duration
	return podmanapi.Connect(ctx, o)
}

// podmanConnectOptions say where podman's API for the store stowage addresses
// is, for every command and job (the one place that decides): socket when
// set, else the policy's [volumes] podman_socket; else podman's default
// socket (podmanapi.DefaultSockets), unless the store was chosen with
// --root/--runroot/--storage-driver (that podman would serve another
// store), and only if it serves the graphroot stowage resolved. A private
// service started in its place gets podman's own configuration plus only
// the store settings the user gave stowage (podmanStoreArgs): podman
// refuses a driver its database did not record.
func (g *globals) podmanConnectOptions(ctx context.Context, p *policy.Policy, socket string) podmanapi.ConnectOptions {
	o := podmanapi.ConnectOptions{Logger: g.logger(), PodmanArgs: g.podmanStoreArgs(p)}
	if socket == "" {
		socket = p.Volumes.PodmanSocket
	}
	explicitStore := g.store.GraphRoot != "" || g.store.RunRoot != "" || g.store.Driver != ""
	switch {
	case socket != "":
		o.Sockets = []string{socket}
	case !explicitStore:
		o.Sockets = podmanapi.DefaultSockets(g.systemScope())
		if so, err := g.storeOptions(ctx, p); err == nil {
			o.GraphRoot = so.GraphRoot // a socket serving another store is not used
		}
	}
	return o
}

// podmanStoreArgs are the global podman flags for the store settings the
// user gave stowage: --root, --runroot, --storage-driver and --storage-opt,
// else the policy's [storage] keys. Nothing stowage derived itself (from
// storage.conf or the store's contents) is passed: podman resolves the
// rest from its own configuration, as it does for the user.
func (g *globals) podmanStoreArgs(p *policy.Policy) []string {
	return g.storeOverrides(p).PodmanArgs()
}
