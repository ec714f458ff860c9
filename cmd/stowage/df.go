package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/jobs/volumes"
	"github.com/stowage/stowage/policy"
)

// newDfCmd is `stowage df`: exact disk accounting of the store.
func newDfCmd(g *globals) *cobra.Command {
	var format, vols string
	c := &cobra.Command{
		Use:   "df",
		Short: "Show the image store's disk usage and reclaimable space (bytes on disk)",
		Long: `Show the store's total size, what removing every unused image would free
(an in-memory replay of containers/storage's image deletion), orphan layers,
containers and the filesystem holding the graphroot.

Sizes are the blocks the files take on the filesystem (allocated bytes,
st_blocks x 512, each hard-linked inode once): what deleting them gives back,
as the filesystem's free space shows. They differ from podman's, which adds up
the store's diff sizes (a vfs layer is a full copy of its parent's tree; a
small file takes a whole block). Images of additional, read-only stores are
counted apart and are never reclaimable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "table" && format != "" {
				return fmt.Errorf("df: unknown --format %q (json or table)", format)
			}
			if vols != "auto" && vols != "yes" && vols != "no" {
				return fmt.Errorf("df: unknown --volumes %q (auto, yes or no)", vols)
			}
			// A one-shot command whose heap (the decoded store) stays
			// live to the end: collecting it early is wasted work, a
			// third of the run's CPU on a big store. Proportional, so
			// the peak stays a small multiple of the live heap.
			debug.SetGCPercent(dfGCPercent)
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			// account may re-execute this process inside the rootless user
			// namespace; podman's socket is reachable from there as well.
			a, err := g.account(cmd.Context(), p, false)
			if err != nil {
				return err
			}
			var vs *volumes.DFSection
			if vols != "no" {
				vs, err = g.volumeUsage(cmd.Context(), p, vols == "yes")
				if err != nil && vols == "yes" {
					return err
				}
				if err != nil {
					g.logger().Debug("df: no volumes section", "error", err)
				}
			}
			out := dfOutput{Accounting: a, Volumes: vs}
			switch format {
			case "json":
				return writeJSON(cmd.OutOrStdout(), out)
			default:
				return writeDfTable(cmd.OutOrStdout(), out)
			}
		},
	}
	c.Flags().StringVar(&format, "format", "table", "output format: table or json")
	c.Flags().StringVar(&vols, "volumes", "auto", "volumes section: auto (from a running podman service), yes (start a private one if none runs), no")
	return c
}

// dfGCPercent is the GOGC `stowage df` runs with.
const dfGCPercent = 400

// dfOutput is `stowage df`: the store's accounting plus podman's volumes.
type dfOutput struct {
	*inventory.Accounting
	Volumes *volumes.DFSection `json:"volumes,omitempty"`
}

// volumeUsage asks podman's API for volume usage; with mayStart it starts a
// private `podman system service` when no socket answers.
func (g *globals) volumeUsage(ctx context.Context, p *policy.Policy, mayStart bool) (*volumes.DFSection, error) {
	conn, err := g.podmanConn(ctx, p, mayStart)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	d, err := volumes.Usage(ctx, conn, p.Volumes, time.Now())
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	return &d, nil
}

// account opens the store read-only (entering the rootless user namespace
// when the driver needs it), takes a snapshot and accounts for it. configs
// reads every image config too (platform fields; costs a lock per image).
//
// Without configs, a snapshot the last Collect left for an unchanged store
// serves instead (inventory.CachedSnapshot): no store load, and no user
// namespace either when the containers can be measured from here.
func (g *globals) account(ctx context.Context, p *policy.Policy, configs bool) (*inventory.Accounting, error) {
	res, err := g.resolveStore(ctx, p)
	if err != nil {
		return nil, err
	}
	so := res.Options
	if !configs {
		if snap, ok := inventory.CachedSnapshot(so.GraphRoot, so.RunRoot, so.GraphDriverName, so.GraphDriverOptions, so.GraphRoot, time.Now()); ok {
			g.logger().Debug("df: the store's records are unchanged since the last snapshot; serving it")
			return inventory.Account(snap), nil
		}
	}
	st, so, _, err := g.openResolved(ctx, p, res, false, false)
	if err != nil {
		return nil, err
	}
	defer storeopen.Close(st)
	snap, err := inventory.Collect(ctx, st, so.GraphRoot, time.Now())
	if err != nil {
		return nil, err
	}
	if configs {
		if err := inventory.ReadConfigs(ctx, st, snap); err != nil {
			return nil, err
		}
	}
	return inventory.Account(snap), nil
}

// basisNote explains Accounting.SizeBasis under the table.
func basisNote(basis string) string {
	switch basis {
	case "allocated":
		return "allocated on disk (what deleting gives back)"
	case "recorded":
		return "as the store records them (this driver's directories are not measured)"
	default:
		return "allocated on disk where measurable, else as the store records them"
	}
}

func percent(part, whole int64) string {
	if whole <= 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}

// writeDfTable prints the accounting like `podman system df`.
func writeDfTable(w io.Writer, out dfOutput) error {
	a := out.Accounting
	bw := bufio.NewWriter(w) // tabwriter writes cell by cell
	w = bw
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
	fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s (%s)\n", a.Images.Count-a.Images.ReadOnlyCount, a.Images.InUseCount,
		report.HumanSize(a.Images.Bytes), report.HumanSize(a.ReclaimableBytes), percent(a.ReclaimableBytes, a.Images.Bytes))
	if a.Images.ReadOnlyCount > 0 {
		fmt.Fprintf(tw, "Read-only images\t%d\t\t%s\t0 B (0%%)\n", a.Images.ReadOnlyCount, report.HumanSize(a.Images.ReadOnlyBytes))
	}
	fmt.Fprintf(tw, "Orphan layers\t%d\t0\t%s\t%s (%s)\n", a.Layers.OrphanCount,
		report.HumanSize(a.Layers.OrphanBytes), report.HumanSize(a.Layers.OrphanBytes), percent(a.Layers.OrphanBytes, a.Images.Bytes))
	fmt.Fprintf(tw, "Containers\t%d\t%d\t%s\t\n", a.Containers.Count, a.Containers.Count, report.HumanSize(a.Containers.Bytes))
	if v := out.Volumes; v != nil {
		fmt.Fprintf(tw, "Local Volumes\t%d\t%d\t%s\t%s (%s)\n", v.Count, v.Count-v.DanglingCount,
			report.HumanSize(v.Bytes), report.HumanSize(v.ReclaimableBytes), percent(v.ReclaimableBytes, v.Bytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fs := a.Filesystem
	fmt.Fprintf(w, "\nFilesystem %s: %s size, %s free (%s), %d layers, %d dangling and %d intermediate images\n",
		fs.Path, report.HumanSize(fs.SizeBytes), report.HumanSize(fs.FreeBytes), percent(fs.FreeBytes, fs.SizeBytes),
		a.Layers.Count, a.Images.DanglingCount, a.Images.IntermediateCount)
	fmt.Fprintf(w, "Sizes: %s\n", basisNote(a.SizeBasis))
	return bw.Flush()
}
