package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stowage/stowage/jobs/shared/jobenv"
	"github.com/stowage/stowage/jobs/shared/jobspec"
	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/policy"
)

// TestRunnersMatchRegistry: every registered job has exactly one runner, in
// the registry's order, and each runner carries its job's descriptor.
func TestRunnersMatchRegistry(t *testing.T) {
	rs := runners()
	var names []string
	for _, r := range rs {
		names = append(names, r.Job.Name)
		if r.Command == nil || r.Short == "" || r.DryRunHelp == "" {
			t.Errorf("runner %s: command, help and --dry-run help are required", r.Job.Name)
		}
		if d, ok := jobspec.Lookup(r.Job.Name); !ok || d.Schedule == nil || d.Mutating == nil {
			t.Errorf("runner %s: no complete descriptor in the registry", r.Job.Name)
		}
	}
	if want := jobspec.Names(); !slices.Equal(names, want) {
		t.Fatalf("runners %v, registry %v", names, want)
	}
	run := newRootCmd(nil)
	for _, name := range jobspec.Names() {
		if c, _, err := run.Find([]string{"run", name}); err != nil || c.Name() != name {
			t.Errorf("stowage run %s: %v", name, err)
		}
	}
}

// toyReport is the toy job's report.
type toyReport struct {
	report.Common
	Counted []int `json:"counted"`
}

// toyRunner is a job that exists only in this test. Adding a job is this:
// its descriptor, its runner (its own package in a real job) and one line
// in runners(); `stowage run toy` then gets the generic command (policy,
// run lock, --dry-run, --format, the environment) and the toy's own flag.
var toyRunner = jobenv.Runner{
	Job: jobspec.Descriptor{
		Name:     "toy",
		Schedule: func(s policy.Schedule) policy.CronSpec { return s.Verify },
		Mutating: func(p *policy.Policy) bool { return p.Prune.Enabled },
	},
	Short:      "Count to --to",
	DryRunHelp: "count, record nothing",
	Command: func(f *pflag.FlagSet) jobenv.RunFunc {
		to := f.Int("to", 3, "count to this")
		return func(_ context.Context, env *jobenv.Env) (*jobenv.Output, error) {
			db, err := env.State()
			if err != nil {
				return nil, err
			}
			if err := db.Check(); err != nil {
				return nil, err
			}
			r := &toyReport{Common: report.Common{Job: "toy", DryRun: env.DryRun, Started: env.Clock.Now(), Events: []report.Event{}}}
			for i := 1; i <= *to; i++ {
				r.Counted = append(r.Counted, i)
			}
			r.Summary = fmt.Sprintf("counted to %d (prune enabled: %t)", *to, env.Policy.Prune.Enabled)
			r.Finished = env.Clock.Now()
			out := &jobenv.Output{Report: r, Text: func(w io.Writer) error {
				_, err := fmt.Fprintln(w, r.Summary)
				return err
			}}
			if *to < 0 {
				return out, errors.New("toy: cannot count down")
			}
			return out, nil
		}
	},
}

// TestRunToyJob: a job added with one registration line runs through the
// generic `stowage run`: the policy is loaded, the report printed as JSON
// or text, the job's flag parsed, a reported failure still prints the
// report, and a real run takes the job's run lock.
func TestRunToyJob(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[prune]\nenabled = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	run := func(args ...string) (string, error) {
		t.Helper()
		root := newRootCmdJobs(nil, append(runners(), toyRunner))
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append([]string{"--policy", pol, "--state-dir", stateDir, "run", "toy"}, args...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}

	out, err := run("--dry-run", "--format", "json", "--to", "4")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var r toyReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Job != "toy" || !r.DryRun || !slices.Equal(r.Counted, []int{1, 2, 3, 4}) || !strings.Contains(r.Summary, "prune enabled: false") {
		t.Errorf("report %+v", r)
	}

	if out, err = run("--dry-run", "--format", "yaml"); err == nil || !strings.Contains(err.Error(), `want text or json, got "yaml"`) || out != "" {
		t.Errorf("--format yaml: %v, output %q", err, out)
	}
	if out, err = run("--dry-run", "--to", "-1"); err == nil || err.Error() != "toy: cannot count down" || out != "counted to -1 (prune enabled: false)\n" {
		t.Errorf("failed run: %v, output %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "run-toy.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry runs took the run lock: %v", err)
	}
	if out, err = run(); err != nil || out != "counted to 3 (prune enabled: false)\n" {
		t.Errorf("real run: %v, output %q", err, out)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "run-toy.lock")); err != nil {
		t.Errorf("real run took no run lock: %v", err)
	}
}
