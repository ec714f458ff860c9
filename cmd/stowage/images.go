package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newImagesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "images",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("images: not implemented yet") },
	}
}
