package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newPolicyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "policy",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("policy: not implemented yet") },
	}
}
