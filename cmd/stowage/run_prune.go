package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newRunPruneCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "prune",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("prune: not implemented yet") },
	}
}
