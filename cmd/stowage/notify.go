package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/refresh"
	"github.com/stowage/stowage/service/notify"
)

// newNotifyCmd is `stowage notify snoozed|snooze REF|unsnooze REF`: the
// references a notification's "Don't remind me" silenced.
func newNotifyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "notify",
		Short: "Manage desktop notifications (snoozed references)",
		Args:  cobra.NoArgs,
	}
	var format string
	list := &cobra.Command{
		Use:   "snoozed",
		Short: "List the references no notification is shown for (\"Don't remind me\")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			ss, err := notify.ListSnoozed(db)
			if err != nil {
				return err
			}
			if format == "json" {
				if ss == nil {
					ss = []notify.Snoozed{}
				}
				return writeJSON(cmd.OutOrStdout(), ss)
			}
			for _, s := range ss {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", s.Ref, s.Created.Local().Format(time.RFC3339))
			}
			return nil
		},
	}
	list.Flags().StringVar(&format, "format", "text", "output format: text or json")
	snooze := &cobra.Command{
		Use:   "snooze REF",
		Short: "Show no more notifications about a reference",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			ref := refresh.NormalizeReference(args[0])
			if err := notify.Snooze(db, ref, time.Now()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "snoozed %s\n", ref)
			return nil
		},
	}
	unsnooze := &cobra.Command{
		Use:   "unsnooze REF",
		Short: "Notify findings about a snoozed reference again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			// As stored (the findings' form), else its normalized form.
			ref := args[0]
			err = notify.Unsnooze(db, ref)
			if errors.Is(err, notify.ErrNotSnoozed) && refresh.NormalizeReference(ref) != ref {
				ref = refresh.NormalizeReference(ref)
				err = notify.Unsnooze(db, ref)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unsnoozed %s\n", ref)
			return nil
		},
	}
	c.AddCommand(list, snooze, unsnooze)
	return c
}
