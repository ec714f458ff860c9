package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newRunVolumesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "volumes",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("volumes: not implemented yet") },
	}
}
