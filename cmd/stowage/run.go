package main

import "github.com/spf13/cobra"

// newRunCmd is `stowage run JOB`: one job run in this process, the same code
// path the daemon's workers use.
func newRunCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "run JOB",
		Short: "Run one maintenance job now, in this process",
		// One real run of a job at a time, across processes.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkLogFormat(); err != nil {
				return err
			}
			return g.lockRun(cmd)
		},
	}
	c.AddCommand(newRunPruneCmd(g), newRunRefreshCmd(g), newRunVerifyCmd(g), newRunVolumesCmd(g))
	return c
}
