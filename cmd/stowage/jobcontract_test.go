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

// TestJobList: the one list of jobs is a valid registry (unique names,
// complete descriptors, own schedule keys, gauges and event kinds), starts
// with the four jobs in their order (status, metrics), every job has a
// complete runner and a `stowage run` command, and jobs/ holds exactly the
// listed jobs and shared/.
func TestJobList(t *testing.T) {
	jobs := allJobs()
	reg := registryOf(jobs)
	if err := reg.Validate(); err != nil {
		t.Fatal(err)
	}
	if names := reg.Names(); !slices.Equal(names[:4], []string{"refresh", "verify", "prune", "volumes"}) {
		t.Errorf("jobs %v: the first four keep their order (status, metrics)", names)
	}
	run := newRootCmd(nil)
	for _, j := range jobs {
		if r := j.Runner; r.Command == nil || r.Short == "" || r.DryRunHelp == "" {
			t.Errorf("runner %s: command, help and --dry-run help are required", j.Spec.Name)
		}
		if c, _, err := run.Find([]string{"run", j.Spec.Name}); err != nil || c.Name() != j.Spec.Name {
			t.Errorf("stowage run %s: %v", j.Spec.Name, err)
		}
	}
	entries, err := os.ReadDir("../../jobs")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	want := append(reg.Names(), "shared")
	slices.Sort(want)
	if !slices.Equal(dirs, want) {
		t.Errorf("jobs/ holds %v, want the listed jobs and shared/: %v", dirs, want)
	}
}

// TestMutatingAndNamespace: who may change storage and who must enter the
// rootless user namespace, per policy.
func TestMutatingAndNamespace(t *testing.T) {
	def := policy.Default()
	pull := policy.Default()
	pull.Refresh.Rules = append(pull.Refresh.Rules, policy.RefreshRule{Match: "x/*", Mode: policy.RefreshPull})
	untag := policy.Default()
	untag.Verify.Mode = policy.VerifyUntag
	integ := policy.Default()
	integ.Verify.Integrity = true
	reg := registryOf(allJobs())
	for _, tt := range []struct {
		name    string
		job     string
		p       *policy.Policy
		dryRun  bool
		mut, ns bool
	}{
		{"refresh default", "refresh", def, false, def.Refresh.MayPull(), def.Refresh.MayPull()},
		{"refresh rule pulls", "refresh", pull, false, true, true},
		{"refresh rule pulls, dry", "refresh", pull, true, true, false},
		{"verify untag", "verify", untag, false, true, true},
		{"verify untag, dry", "verify", untag, true, true, false},
		{"verify integrity, dry", "verify", integ, true, false, true},
		{"prune", "prune", def, false, def.Prune.Enabled, true},
		{"prune, dry", "prune", def, true, def.Prune.Enabled, false},
		{"volumes", "volumes", def, false, def.Volumes.Enabled, false},
	} {
		d, ok := reg.Lookup(tt.job)
		if !ok {
			t.Fatalf("%s: no job %s", tt.name, tt.job)
		}
		if got := d.Mutating(tt.p); got != tt.mut {
			t.Errorf("%s: mutating %t, want %t", tt.name, got, tt.mut)
		}
		ns := d.UserNamespace != nil && d.UserNamespace(tt.p, tt.dryRun)
		if ns != tt.ns {
			t.Errorf("%s: user namespace %t, want %t", tt.name, ns, tt.ns)
		}
	}
}

// toyReport is the toy job's report.
type toyReport struct {
	report.Common
	Counted []int `json:"counted"`
}

// toyJob is a job that exists only in this test. Adding a job is this:
// its descriptor and its runner (its own package in a real job) and one
// line in allJobs(); `stowage run toy` then gets the generic command
// (policy, run lock, --dry-run, --format, the environment) and the toy's
// own flag.
var toyJob = jobenv.Job{
	Spec: jobspec.Descriptor{
		Name:     "toy",
		Schedule: func(s policy.Schedule) policy.CronSpec { return s.Verify },
		Mutating: func(p *policy.Policy) bool { return p.Prune.Enabled },
	},
	Runner: toyRunner,
}

var toyRunner = jobenv.Runner{
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
		root := newRootCmdJobs(nil, append(allJobs(), toyJob))
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
