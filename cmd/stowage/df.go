package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newDfCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "df",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("df: not implemented yet") },
	}
}
