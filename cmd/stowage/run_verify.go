package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(owner): replace with the real command.
func newRunVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "verify",
		Hidden: true,
		RunE:   func(*cobra.Command, []string) error { return errors.New("verify: not implemented yet") },
	}
}
