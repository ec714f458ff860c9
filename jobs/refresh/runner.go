package refresh

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/pflag"
	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/jobs/refresh/refreshspec"
	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/storeopen"
)

// Entry is the refresh job as the command line lists it: its descriptor and
// its runner.
var Entry = jobenv.Job{Spec: refreshspec.Descriptor, Runner: runner}

// runner is `stowage run refresh`: check every tagged registry reference
// for drift, record it, and pull where the policy says so.
var runner = jobenv.Runner{
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

With --pull REF it checks that one reference alone and pulls it when it
drifted (and its newer version when one is found), whatever its mode: what a
notification's "Pull update" runs. A reference refresh skips (mode off,
digest-pinned, localhost/) or one pinned with stowage pin is refused; the old
image is kept, nothing is removed.

The exit status is 1 when references were to be checked and not one could
be (every one an error or unauthorized: a broken registries.conf or
auth.json, no registry reachable); the report is printed all the same.`,
	DryRunHelp: "check and report only: no pulls, no history written",
	Command:    command,
}

func command(f *pflag.FlagSet) jobenv.RunFunc {
	var authFile, certDir, sigPolicy, deferPulls, pull string
	f.StringVar(&authFile, "authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, then the containers auth.json lookup)")
	f.StringVar(&certDir, "cert-dir", "", "certificates directory for all registries (as podman --cert-dir; default: certs.d lookup)")
	f.StringVar(&sigPolicy, "signature-policy", "", "signature policy file for pulls (default: the system policy.json)")
	f.StringVar(&deferPulls, "defer-pulls", "", "pull nothing, giving this reason in the report (the daemon sets it on a metered connection or battery: [schedule] defer_on_metered, defer_on_battery)")
	f.StringVar(&pull, "pull", "", "check only this reference and pull it if drifted, or its newer version if one is found, whatever its mode (a pinned reference is refused)")
	return func(ctx context.Context, env *jobenv.Env) (*jobenv.Output, error) {
		p := env.Policy
		// --pull writes layers whatever the policy's mode.
		userNS := refreshspec.Descriptor.UserNamespace(p, env.DryRun) || pull != "" && !env.DryRun
		st, err := env.OpenStore(ctx, jobenv.StoreRequest{UserNamespace: userNS})
		if err != nil {
			return nil, err
		}
		defer storeopen.Close(st.Store)
		db, err := env.State()
		if err != nil {
			return nil, err
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
		rep, err := Run(ctx, env.Log, st.Store, db, Options{Policy: p.Refresh, Sys: sys, DryRun: env.DryRun, Clock: env.Clock, DeferPulls: deferPulls, PullOnly: pull})
		if err != nil {
			return nil, err
		}
		// Checked nothing: the report is out, the run still failed (the
		// daemon records a non-zero exit as a failed run).
		return &jobenv.Output{Report: rep, Text: func(w io.Writer) error { return printText(w, rep) }}, rep.Err()
	}
}

func printText(w io.Writer, rep *Report) error {
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
			detail = "pulled " + short(r.PulledImageID)
		}
		fmt.Fprintf(tw, "%s\t%s\t%t\t%s\t%s\t%s\n", r.Reference, r.Status, r.New, r.Mode, short(r.RemoteDigest), detail)
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
		if detail == "" {
			detail = r.Note
		}
		if r.PulledImageID != "" {
			detail = "pulled " + short(r.PulledImageID)
		}
		newer := r.Newer
		if newer == "" {
			newer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", r.Reference, r.Level, newer, r.New, detail)
	}
	return tw.Flush()
}

// short abbreviates an ID or digest for tables.
func short(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}
