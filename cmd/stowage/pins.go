package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/pins"
)

// newPinCmds are `stowage pin REF...`, `stowage unpin REF...` and
// `stowage pins`: references (or image IDs) the prune job never removes.
func newPinCmds(g *globals) []*cobra.Command {
	var format string
	pin := &cobra.Command{
		Use:   "pin REF...",
		Short: "Pin images so that prune never removes them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			for _, a := range args {
				p, err := pins.Add(db, a, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "pinned %s\n", p.Ref)
			}
			return nil
		},
	}
	unpin := &cobra.Command{
		Use:   "unpin REF...",
		Short: "Remove pins",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			var errs []error
			for _, a := range args {
				if err := pins.Remove(db, a); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "unpinned %s\n", a)
			}
			return errors.Join(errs...)
		},
	}
	list := &cobra.Command{
		Use:   "pins",
		Short: "List pinned references",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			ps, err := pins.List(db)
			if err != nil {
				return err
			}
			if format == "json" {
				if ps == nil {
					ps = []pins.Pin{}
				}
				return writeJSON(cmd.OutOrStdout(), ps)
			}
			for _, p := range ps {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", p.Ref, p.Created.Local().Format(time.RFC3339))
			}
			return nil
		},
	}
	list.Flags().StringVar(&format, "format", "text", "output format: text or json")
	return []*cobra.Command{pin, unpin, list}
}
