package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/inventory"
	"github.com/stowage/stowage/jobs/storeopen"
)

// newDfCmd is `stowage df`: exact disk accounting of the store.
func newDfCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "df",
		Short: "Show exact disk usage and reclaimable space of the image store",
		Long: `Show the store's total size, what removing every unused image would free
(exactly: an in-memory replay of containers/storage's image deletion), orphan
layers and the filesystem holding the graphroot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := g.account(cmd.Context(), false)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return writeJSON(cmd.OutOrStdout(), a)
			case "table", "":
				return writeDfTable(cmd.OutOrStdout(), a)
			default:
				return fmt.Errorf("df: unknown --format %q (json or table)", format)
			}
		},
	}
	c.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return c
}

// account opens the store read-only (entering the rootless user namespace
// when the driver needs it), takes a snapshot and accounts for it. configs
// reads every image config too (platform fields; costs a lock per image).
func (g *globals) account(ctx context.Context, configs bool) (*inventory.Accounting, error) {
	p, err := g.loadPolicy()
	if err != nil {
		return nil, err
	}
	st, so, err := g.openStore(p, false)
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

// humanSize formats bytes as podman does: decimal units, 3 significant
// digits, a space before the unit ("413 kB").
func humanSize(n int64) string {
	s := units.HumanSizeWithPrecision(float64(n), 3)
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i > 0 {
		s = s[:i] + " " + s[i:]
	}
	return s
}

func percent(part, whole int64) string {
	if whole <= 0 {
		return "0%"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}

// writeDfTable prints the accounting like `podman system df`.
func writeDfTable(w io.Writer, a *inventory.Accounting) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
	fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s (%s)\n", a.Images.Count, a.Images.InUseCount,
		humanSize(a.TotalBytes), humanSize(a.ReclaimableBytes), percent(a.ReclaimableBytes, a.TotalBytes))
	fmt.Fprintf(tw, "Orphan layers\t%d\t0\t%s\t%s (%s)\n", a.Layers.OrphanCount,
		humanSize(a.Layers.OrphanBytes), humanSize(a.Layers.OrphanBytes), percent(a.Layers.OrphanBytes, a.TotalBytes))
	fmt.Fprintf(tw, "Containers\t%d\t%d\t\t\n", a.Containers.Count, a.Containers.Count)
	if err := tw.Flush(); err != nil {
		return err
	}
	fs := a.Filesystem
	_, err := fmt.Fprintf(w, "\nFilesystem %s: %s size, %s free (%s), %d layers, %d dangling and %d intermediate images\n",
		fs.Path, humanSize(fs.SizeBytes), humanSize(fs.FreeBytes), percent(fs.FreeBytes, fs.SizeBytes),
		a.Layers.Count, a.Images.DanglingCount, a.Images.IntermediateCount)
	return err
}
