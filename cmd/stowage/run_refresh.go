package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/jobs/refresh"
	"github.com/stowage/stowage/jobs/storeopen"
)

// newRunRefreshCmd is `stowage run refresh`: check every tagged registry
// reference for drift, record it, and pull where the policy says so.
func newRunRefreshCmd(g *globals) *cobra.Command {
	var (
		dryRun                       bool
		format                       string
		authFile, certDir, sigPolicy string
	)
	c := &cobra.Command{
		Use:   "refresh",
		Short: "Check local tags against their registries (HEAD first) and report drift",
		Long: `Resolves every tagged registry reference held locally with one HEAD request
where possible, classifies it as current, drifted, missing, blocked,
unauthorized or error, records the digests seen, and in pull mode pulls
drifted tags (signature policy enforced), keeping the old image.

For tags that look like versions (1.25, v2.1.3, 1.25.3-alpine) it lists each
repository's tags once ([refresh] newer, newer_tags, newer_exclude) and
reports the newest version of the same track the policy allows, once per
reference and version; it pulls one only where a [[refresh.rule]] sets
pull_newer, as NAME:NEWTAG beside the old tag.

Registries are configured like podman: registries.conf (mirrors, blocked,
insecure), certs.d, auth.json, REGISTRY_AUTH_FILE and credential helpers.
A credential helper gets the per-request timeout ([refresh] timeout) and is
killed, with its process group, when it runs out.

The exit status is 1 when references were to be checked and not one could
be (every one an error or unauthorized: a broken registries.conf or
auth.json, no registry reachable); the report is printed all the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			// Notify mode only reads the store; pull mode writes layers, which
			// a rootless user can only do inside the user namespace.
			st, _, err := g.openStore(cmd.Context(), p, !dryRun && p.Refresh.MayPull())
			if err != nil {
				return err
			}
			defer storeopen.Close(st)
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			sys := &types.SystemContext{
				AuthFilePath:        authFile,
				DockerCertPath:      certDir,
				SignaturePolicyPath: sigPolicy,
			}
			if sys.AuthFilePath == "" {
				// podman's convention, not containers/image's.
				sys.AuthFilePath = os.Getenv("REGISTRY_AUTH_FILE")
			}
			rep, err := refresh.Run(cmd.Context(), g.logger(), st, db, refresh.Options{
				Policy: p.Refresh, Sys: sys, DryRun: dryRun,
			})
			if err != nil {
				return err
			}
			if format == "json" {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				err = printRefresh(cmd.OutOrStdout(), rep)
			}
			if err != nil {
				return err
			}
			// Checked nothing: the report is out, the run still failed (the
			// daemon records a non-zero exit as a failed run).
			if err := rep.Err(); err != nil {
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "check and report only: no pulls, no history written")
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringVar(&authFile, "authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, then the containers auth.json lookup)")
	f.StringVar(&certDir, "cert-dir", "", "certificates directory for all registries (as podman --cert-dir; default: certs.d lookup)")
	f.StringVar(&sigPolicy, "signature-policy", "", "signature policy file for pulls (default: the system policy.json)")
	return c
}

func printRefresh(w io.Writer, rep *refresh.Report) error {
	fmt.Fprintln(w, rep.Summary)
	if len(rep.Results) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tSTATUS\tNEW\tMODE\tREMOTE DIGEST\tDETAIL")
	for _, r := range rep.Results {
		detail := r.Error
		if detail == "" {
			detail = r.Note
		}
		if r.PulledImageID != "" {
			detail = "pulled " + refreshShort(r.PulledImageID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%s\n", r.Reference, r.Status, r.New, r.Mode, refreshShort(r.RemoteDigest), detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Newer) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tLEVEL\tNEWER\tNEW\tDETAIL")
	for _, r := range rep.Newer {
		detail := r.Error
		if r.PulledImageID != "" {
			detail = "pulled " + refreshShort(r.PulledImageID)
		}
		newer := r.Newer
		if newer == "" {
			newer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", r.Reference, r.Level, newer, r.New, detail)
	}
	return tw.Flush()
}

// refreshShort abbreviates an ID or digest for tables.
func refreshShort(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}
