package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/storeopen"
	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/jobs/verify/integrity"
	"github.com/stowage/stowage/policy"
)

// newRunVerifyCmd is `stowage run verify [--dry-run] [--integrity] [--format json]`.
func newRunVerifyCmd(g *globals) *cobra.Command {
	var (
		dryRun, integ bool
		format        string
		policyJSON    string
		mode          string
	)
	c := &cobra.Command{
		Use:   "verify",
		Short: "Re-verify local images' signatures against the trust policy (and layer integrity)",
		Long: `Evaluate every local image, under each of its names, against the current
containers trust policy (policy.json) with the signatures stored alongside it,
report names newly rejected or recovered since the previous run, and untag or
remove failing images when [verify] mode says so. With --integrity (or
[verify] integrity = true) also re-hash every layer and report tampered ones.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format: want text or json, got %q", format)
			}
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			v := p.Verify
			if cmd.Flags().Changed("mode") {
				if err := v.Mode.UnmarshalText([]byte(mode)); err != nil {
					return fmt.Errorf("--mode: %w", err)
				}
			}
			if policyJSON != "" {
				v.PolicyJSON = policyJSON
			}
			if v.IntegrityRate.IsPercent {
				return fmt.Errorf("[verify] integrity_rate must be a size per second (\"200MiB\"), not a percentage")
			}
			integ = integ || v.Integrity
			// Reading subuid-owned layer files (integrity) needs the rootless
			// user namespace just as deleting does.
			willDelete := integ || !dryRun && (v.Mode == policy.VerifyUntag || v.Mode == policy.VerifyRemove)
			st, so, err := g.openStore(cmd.Context(), p, willDelete)
			if err != nil {
				return err
			}
			defer storeopen.Close(st)
			db, err := g.stateDB()
			if err != nil {
				return err
			}
			rep, err := verify.Run(cmd.Context(), st, verify.Options{
				Mode:          v.Mode,
				PolicyJSON:    v.PolicyJSON,
				Integrity:     integ,
				IntegrityRate: v.IntegrityRate.Bytes,
				DryRun:        dryRun,
				GraphRoot:     so.GraphRoot,
				Driver:        so.GraphDriverName,
				State:         db,
				Log:           g.logger(),
			})
			if err != nil {
				return err
			}
			if format == "json" {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printVerifyText(cmd, rep)
			}
			if len(rep.TrustConfigErrors) > 0 {
				// Fail closed and loudly: a broken key is not a verdict.
				return &exitError{code: 1, msg: "verify: " + strings.Join(rep.TrustConfigErrors, "; ")}
			}
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "verify and plan actions, but change neither the store nor the recorded verdicts")
	f.BoolVar(&integ, "integrity", false, "also re-hash every layer and compare with its recorded digest")
	f.StringVar(&format, "format", "text", "output format: text or json")
	f.StringVar(&policyJSON, "signature-policy", "", "trust policy file (default: policy [verify] policy_json, then the containers default)")
	f.StringVar(&mode, "mode", "", "override [verify] mode: report, untag, remove or off")
	return c
}

func printVerifyText(cmd *cobra.Command, r *verify.Report) {
	w := cmd.OutOrStdout()
	for _, res := range r.Results {
		mark := ""
		if res.Changed {
			mark = " (changed)"
		}
		fmt.Fprintf(w, "%-9s %.12s %s: %s%s\n", res.Status, res.ImageID, res.Reference, res.Reason, mark)
	}
	for _, a := range r.Actions {
		state := "would " + string(a.Kind)
		switch {
		case a.Skipped:
			state = "skipped " + string(a.Kind)
		case a.Applied && a.Kind == verify.ActionUntag:
			state = "untagged"
		case a.Applied:
			state = "removed"
		}
		fmt.Fprintf(w, "%s %.12s %v: %s\n", state, a.ImageID, a.Names, a.Reason)
	}
	for _, l := range r.Layers {
		if l.Status != integrity.StatusOK {
			fmt.Fprintf(w, "layer %.12s %s: %s %v images %v\n", l.ID, l.Status, l.Reason, l.Files, l.Images)
		}
	}
	fmt.Fprintln(w, r.Summary)
}
