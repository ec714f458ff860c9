package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(prune owner): pin, unpin, pins.
func newPinCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{{
		Use: "pin", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errors.New("pin: not implemented yet") },
	}}
}
