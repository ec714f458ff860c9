package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// TODO(daemon owner): daemon, status, jobs, trigger, report, reload.
func newDaemonCmds(g *globals) []*cobra.Command {
	return []*cobra.Command{{
		Use: "daemon", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errors.New("daemon: not implemented yet") },
	}}
}
