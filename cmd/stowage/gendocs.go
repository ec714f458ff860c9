package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(packaging owner): man pages and completions generated from the command tree.
func newGenDocsCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use: "gendocs", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errors.New("gendocs: not implemented yet") },
	}
}
