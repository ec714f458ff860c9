package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/refresh"
)

// newHistoryCmd is `stowage history [REF]`: the remote digests the refresh
// job has seen per reference, with first and last sighting.
func newHistoryCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "history [REF]",
		Short: "Show the remote digests and newer versions seen per reference by the refresh job",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			ref := ""
			if len(args) == 1 {
				ref = refresh.NormalizeReference(args[0])
			}
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			recs, err := refresh.History(db, ref)
			if err != nil {
				return err
			}
			if ref != "" && len(recs) == 0 {
				return fmt.Errorf("no refresh history for %s", ref)
			}
			if format == "json" {
				if recs == nil {
					recs = []refresh.Record{}
				}
				return writeJSON(cmd.OutOrStdout(), recs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REFERENCE\tDIGEST\tDRIFT\tFIRST SEEN\tLAST SEEN")
			for _, r := range recs {
				for _, s := range r.Seen {
					fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\n", r.Reference, s.Digest, s.Drift,
						s.FirstSeen.Local().Format(time.DateTime), s.LastSeen.Local().Format(time.DateTime))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return writeNewer(cmd.OutOrStdout(), recs)
		},
	}
	c.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return c
}

// writeNewer prints the newer versions reported per reference, when any.
func writeNewer(w io.Writer, recs []refresh.Record) error {
	found := false
	for _, r := range recs {
		found = found || len(r.Newer) > 0
	}
	if !found {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tNEWER VERSION\tFIRST SEEN\tLAST SEEN")
	for _, r := range recs {
		for _, n := range r.Newer {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Reference, n.Tag,
				n.FirstSeen.Local().Format(time.DateTime), n.LastSeen.Local().Format(time.DateTime))
		}
	}
	return tw.Flush()
}
