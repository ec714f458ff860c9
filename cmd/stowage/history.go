package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "history",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("history: not implemented yet") },
	}
}
