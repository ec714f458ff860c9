package main

import "github.com/spf13/cobra"

// newRunCmd is `stowage run JOB`: one job run in this process, the same code
// path the daemon's workers use.
func newRunCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "run JOB",
		Short: "Run one maintenance job now, in this process",
	}
	c.AddCommand(newRunPruneCmd(g), newRunRefreshCmd(g), newRunVerifyCmd(g), newRunVolumesCmd(g))
	return c
}
