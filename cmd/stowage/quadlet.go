package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/prune/quadlet"
)

// newQuadletCmd is `stowage quadlet [--format text|json]`: the images
// Quadlet units reference, which prune keeps.
func newQuadletCmd(g *globals) *cobra.Command {
	var (
		format string
		dirs   []string
	)
	c := &cobra.Command{
		Use:   "quadlet",
		Short: "List the images Podman Quadlet units reference (prune keeps them)",
		Long: `Read the Quadlet units podman's generator reads (system units as root,
the user's with --user or as non-root; --quadlet-dir replaces the search path)
and list the images they reference, the way prune matches them.

--format text prints one normalized reference per line, sorted and unique
(e.g. localhost/app:1, docker.io/library/alpine:latest for "alpine").
--format json prints [{"ref": ..., "units": [unit file, ...]}, ...].
Like prune, an unreadable unit, drop-in or YAML file, a syntax error or an
unresolvable NAME.image / NAME.build reference is an error (exit status 1);
the references found are still printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			refs, scanErr := quadlet.Scan(quadlet.SearchPath(dirs, g.systemScope()))
			imgs := refs.Images()
			w := cmd.OutOrStdout()
			if format == "json" {
				if imgs == nil {
					imgs = []quadlet.Image{}
				}
				if err := writeJSON(w, imgs); err != nil {
					return err
				}
			} else {
				for _, i := range imgs {
					fmt.Fprintln(w, i.Ref)
				}
			}
			if scanErr != nil {
				return &exitError{code: 1, msg: scanErr.Error()}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringArrayVar(&dirs, "quadlet-dir", nil, "Quadlet unit directory to read with its subdirectories, repeatable (default: podman's search path)")
	return c
}
