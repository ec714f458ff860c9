package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/storeopen"
	"github.com/stowage/stowage/jobs/verify/integrity"
	"github.com/stowage/stowage/jobs/verify/verifyspec"
)

// Entry is the verify job as the command line lists it: its descriptor and
// its runner.
var Entry = jobenv.Job{Spec: verifyspec.Descriptor, Runner: runner}

// runner is `stowage run verify [--integrity] [--mode M]`.
var runner = jobenv.Runner{
	Short: "Re-verify local images' signatures against the trust policy (and layer integrity)",
	Long: `Evaluate every local image, under each of its names, against the current
containers trust policy (policy.json) with the signatures stored alongside it,
report names newly rejected or recovered since the previous run, and untag or
remove failing images when [verify] mode says so. With --integrity (or
[verify] integrity = true) also re-hash every layer and report tampered ones.`,
	DryRunHelp: "verify and plan actions, but change neither the store nor the recorded verdicts",
	Command:    command,
}

func command(f *pflag.FlagSet) jobenv.RunFunc {
	var (
		integ            bool
		policyJSON, mode string
		deferInteg       string
	)
	f.BoolVar(&integ, "integrity", false, "also re-hash every layer and compare with its recorded digest")
	f.StringVar(&policyJSON, "signature-policy", "", "trust policy file (default: policy [verify] policy_json, then the containers default)")
	f.StringVar(&mode, "mode", "", "override [verify] mode: report, untag, remove or off")
	f.StringVar(&deferInteg, "defer-integrity", "", "leave the integrity scan out, giving this reason in the report (the daemon sets it on a metered connection or battery: [schedule] defer_on_metered, defer_on_battery)")
	return func(ctx context.Context, env *jobenv.Env) (*jobenv.Output, error) {
		// The flags override the policy for this run.
		p := *env.Policy
		v := &p.Verify
		if f.Changed("mode") {
			if err := v.Mode.UnmarshalText([]byte(mode)); err != nil {
				return nil, fmt.Errorf("--mode: %w", err)
			}
		}
		if policyJSON != "" {
			v.PolicyJSON = policyJSON
		}
		if v.IntegrityRate.IsPercent {
			return nil, errors.New("[verify] integrity_rate must be a size per second (\"200MiB\"), not a percentage")
		}
		v.Integrity = integ || v.Integrity
		st, err := env.OpenStore(ctx, jobenv.StoreRequest{UserNamespace: verifyspec.Descriptor.UserNamespace(&p, env.DryRun)})
		if err != nil {
			return nil, err
		}
		defer storeopen.Close(st.Store)
		db, err := env.State()
		if err != nil {
			return nil, err
		}
		rep, err := Run(ctx, st.Store, Options{
			Mode:           v.Mode,
			PolicyJSON:     v.PolicyJSON,
			Integrity:      v.Integrity,
			DeferIntegrity: deferInteg,
			IntegrityRate:  v.IntegrityRate.Bytes,
			DryRun:         env.DryRun,
			GraphRoot:      st.Options.GraphRoot,
			Driver:         st.Options.GraphDriverName,
			State:          db,
			Log:            env.Log,
			Clock:          env.Clock,
		})
		if err != nil {
			return nil, err
		}
		out := &jobenv.Output{Report: rep, Text: func(w io.Writer) error { return printText(w, rep) }}
		if len(rep.TrustConfigErrors) > 0 {
			// Fail closed and loudly: a broken key is not a verdict.
			return out, errors.New("verify: " + strings.Join(rep.TrustConfigErrors, "; "))
		}
		return out, nil
	}
}

func printText(w io.Writer, r *Report) error {
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
		case a.Applied && a.Kind == ActionUntag:
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
	_, err := fmt.Fprintln(w, r.Summary)
	return err
}
