package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/podmanapi"
	"github.com/stowage/stowage/jobs/volumes"
	"github.com/stowage/stowage/policy"
)

// newRunVolumesCmd is `stowage run volumes`: remove unused Podman volumes the
// policy lets go, through podman's REST API.
func newRunVolumesCmd(g *globals) *cobra.Command {
	var (
		dryRun bool
		format string
	)
	c := &cobra.Command{
		Use:   "volumes",
		Short: "Remove unused (dangling) Podman volumes the policy lets go",
		Long: `Remove dangling Podman volumes through podman's REST API: by default only
anonymous volumes older than [volumes] min_age without a keep label. Podman's
socket is [volumes] podman_socket, else podman's default one; when none answers
a private "podman system service" is started for the run. A volume a container
starts using meanwhile is refused by podman and kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "table" && format != "" {
				return fmt.Errorf("run volumes: unknown --format %q (json or table)", format)
			}
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			conn, err := g.podmanConn(ctx, p, true)
			if err != nil {
				return fmt.Errorf("run volumes: %w", err)
			}
			defer conn.Close()
			r, runErr := volumes.Run(ctx, conn, p.Volumes, volumes.Options{DryRun: dryRun, Logger: g.logger()})
			r.PodmanSocket, r.PodmanStarted = conn.Socket(), conn.Started
			var werr error
			if format == "json" {
				werr = writeJSON(cmd.OutOrStdout(), r)
			} else {
				werr = writeVolumesTable(cmd.OutOrStdout(), r)
			}
			if runErr != nil {
				return fmt.Errorf("run volumes: %w", runErr)
			}
			return werr
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan, remove nothing")
	c.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return c
}

// podmanConn connects to podman's API (see podmanConnectOptions), starting a
// private `podman system service` when none answers and mayStart is set.
func (g *globals) podmanConn(ctx context.Context, p *policy.Policy, mayStart bool) (*podmanapi.Conn, error) {
	o := g.podmanConnectOptions(ctx, p, p.Volumes.PodmanSocket)
	o.NoStart = !mayStart
	o.Timeout = p.Schedule.RunTimeout.Duration
	return podmanapi.Connect(ctx, o)
}

// podmanConnectOptions say where podman's API for the store stowage addresses
// is: socket when set; else podman's default socket, unless the store was
// chosen with --root/--runroot/--storage-driver (that podman would serve
// another store), and only if it serves the graphroot stowage resolved. A
// private service started in its place gets podman's own configuration
// plus only the store settings the user gave stowage (podmanStoreArgs):
// podman refuses a driver its database did not record.
func (g *globals) podmanConnectOptions(ctx context.Context, p *policy.Policy, socket string) podmanapi.ConnectOptions {
	o := podmanapi.ConnectOptions{Logger: g.logger(), PodmanArgs: g.podmanStoreArgs(p)}
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

// writeVolumesTable prints the report for people.
func writeVolumesTable(w io.Writer, r *volumes.Report) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tACTION\tSIZE\tCREATED\tREASON")
	action := "removed"
	if r.DryRun {
		action = "would remove"
	}
	row := func(it volumes.Item, act string) {
		why := it.Reason
		if it.Detail != "" {
			why += " (" + it.Detail + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Name, act, humanSize(it.Bytes), it.Created.Format("2006-01-02 15:04"), why)
	}
	for _, it := range r.Removed {
		row(it, action)
	}
	for _, it := range r.Kept {
		row(it, "kept")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%s (podman %s)\n", r.Summary, r.PodmanVersion)
	return err
}
