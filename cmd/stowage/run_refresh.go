package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newRunRefreshCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "refresh",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("refresh: not implemented yet") },
	}
}
