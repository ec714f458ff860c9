package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/stowage/stowage/policy"
)

func newPolicyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Check or show the effective policy",
	}
	c.AddCommand(&cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file and its drop-ins; print every problem as FILE:LINE:COL",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := policy.LoadOptions{Path: g.policyPath, System: g.systemScope()}
			if len(args) == 1 {
				o.Path = args[0]
			}
			_, sources, err := policy.Load(o)
			if err != nil {
				var perr *policy.Error
				if errors.As(err, &perr) {
					for _, p := range perr.Problems {
						fmt.Fprintln(cmd.ErrOrStderr(), p.String())
					}
					return &exitError{code: 1}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "policy ok: %s\n", strings.Join(sources, ", "))
			return nil
		},
	})
	c.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective policy as TOML, with the sources it came from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, sources, err := policy.Load(policy.LoadOptions{Path: g.policyPath, System: g.systemScope()})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintln(w, "# effective stowage policy, from (later overrides earlier):")
			for _, s := range sources {
				fmt.Fprintf(w, "#   %s\n", s)
			}
			if err := toml.NewEncoder(w).Encode(p); err != nil {
				return fmt.Errorf("encoding policy: %w", err)
			}
			return nil
		},
	})
	return c
}
