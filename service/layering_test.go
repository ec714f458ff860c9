// Package service_test checks the project's tree and dependency direction,
// cmd → service → jobs → policy (DESIGN.md §1):
//
//	cmd/stowage        the command line (and the worker's `stowage run JOB`)
//	service/...        the daemon and its adapters: scheduler, control API,
//	                   D-Bus, journal, metrics, notifications, worker launcher
//	jobs/JOB           one package per job (refresh, verify, prune, volumes,
//	                   exactly the jobs cmd/stowage lists), each with its
//	                   own sub-packages, among them JOBspec, its descriptor
//	jobs/shared/...    the parts jobs, the daemon and the command line share:
//	                   store opening, state, reports, inventory and layer
//	                   graph, podman API, last use, pins, quota, clock, the
//	                   job contract (jobspec, jobenv)
//	policy/...         the TOML policy
//
// A job may import shared parts but no other job; a shared part never
// imports a job; nothing under jobs/ links the service manager or bus
// libraries; the policy imports no project package; and the daemon links
// no storage graph driver.
package service_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

const module = "github.com/stowage/stowage"

// deps lists the packages matching pattern with their transitive imports.
func deps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-tags", testenv.Tags, "-deps=false",
		"-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, pattern)
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pattern, err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 {
			m[f[0]] = f[1:]
		}
	}
	return m
}

// TestTree checks the tree reads as the architecture: the required
// top-level directories, and under jobs/ one directory per registered job
// plus shared/. It reads the files git tracks or would track, so build
// output (bin/) is not part of the tree.
func TestTree(t *testing.T) {
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	cmd.Dir = testenv.RepoRoot()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	// dirs returns the directories directly under prefix that hold files.
	dirs := func(prefix string) []string {
		var got []string
		for _, f := range strings.Split(string(out), "\n") {
			rest, ok := strings.CutPrefix(f, prefix)
			if !ok {
				continue
			}
			if d, _, ok := strings.Cut(rest, "/"); ok && !strings.HasPrefix(d, ".") && !slices.Contains(got, d) {
				got = append(got, d)
			}
		}
		slices.Sort(got)
		return got
	}
	top := []string{"cmd", "etc", "jobs", "packaging", "policy", "service", "test", "units"}
	if got := dirs(""); !slices.Equal(got, top) {
		t.Errorf("top-level directories = %v, want %v", got, top)
	}
	// Each job has its light descriptor package, jobs/JOB/JOBspec (that
	// jobs/ holds exactly the jobs the command line lists is checked
	// there, where the list is).
	for _, job := range dirs("jobs/") {
		if job == "shared" {
			continue
		}
		if got := dirs("jobs/" + job + "/"); !slices.Contains(got, job+"spec") {
			t.Errorf("jobs/%s has no descriptor package jobs/%s/%sspec", job, job, job)
		}
	}
}

func TestDependencyDirection(t *testing.T) {
	const (
		jobs   = module + "/jobs/"
		shared = module + "/jobs/shared/"
	)
	// jobOf names the job a package belongs to ("" for a shared part or a
	// package outside jobs/).
	jobOf := func(pkg string) string {
		if !strings.HasPrefix(pkg, jobs) || strings.HasPrefix(pkg, shared) {
			return ""
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(pkg, jobs), "/")
		return name
	}
	rules := []struct {
		pattern string
		// bad reports why pkg must not depend on d, or "".
		bad func(pkg, d string) string
	}{
		{"./policy/...", func(_, d string) string {
			if strings.HasPrefix(d, module+"/") && !strings.HasPrefix(d, module+"/policy") ||
				strings.HasPrefix(d, "github.com/godbus/") || strings.HasPrefix(d, "github.com/coreos/go-systemd/") {
				return "the policy imports no project package nor bus library"
			}
			return ""
		}},
		{"./jobs/...", func(_, d string) string {
			for _, p := range []string{module + "/service", module + "/cmd", "github.com/godbus/", "github.com/coreos/go-systemd/"} {
				if strings.HasPrefix(d, p) {
					return "jobs link neither the daemon, the command line nor bus libraries"
				}
			}
			return ""
		}},
		{"./jobs/shared/...", func(_, d string) string {
			if jobOf(d) != "" {
				return "a shared part never imports a job"
			}
			return ""
		}},
		{"./jobs/...", func(pkg, d string) string {
			if j := jobOf(pkg); j != "" && jobOf(d) != "" && jobOf(d) != j {
				return "a job imports shared parts, not another job"
			}
			return ""
		}},
		{"./service/...", func(_, d string) string {
			if strings.HasPrefix(d, module+"/cmd") {
				return "the daemon does not import the command line"
			}
			return ""
		}},
		{"./service/...", func(_, d string) string {
			if j := jobOf(d); j != "" && d != jobs+j+"/"+j+"spec" {
				return "the daemon knows a job only by its descriptor (jobs/JOB/JOBspec)"
			}
			return ""
		}},
	}
	for _, r := range rules {
		ps := deps(t, r.pattern)
		if len(ps) == 0 {
			t.Fatalf("go list %s: no packages", r.pattern)
		}
		for pkg, ds := range ps {
			for _, d := range ds {
				if why := r.bad(pkg, d); why != "" {
					t.Errorf("%s imports %s: %s", pkg, d, why)
				}
			}
		}
	}
}

// TestDaemonLinksNoGraphDriver checks that the daemon's dependency closure
// holds no containers/storage store nor graph driver (overlay, vfs, zfs...):
// only workers open the store. The daemon is defined as the packages under
// service/ (the daemon, its D-Bus, control socket, journal, metrics and
// notification adapters, the scheduler and the worker launcher). The
// stowage binary itself also holds the worker, so its closure is not the
// daemon's and is not checked here. Each job's descriptor package
// (jobs/JOB/JOBspec) is held to the same rule.
func TestDaemonLinksNoGraphDriver(t *testing.T) {
	const storage = "go.podman.io/storage"
	light := deps(t, "./service/...")
	// The jobs' descriptor packages are light too: the daemon's tests and
	// the command line's registry read them.
	for pkg, ds := range deps(t, "./jobs/...") {
		if rest, ok := strings.CutPrefix(pkg, module+"/jobs/"); ok {
			if job, sub, _ := strings.Cut(rest, "/"); sub == job+"spec" {
				light[pkg] = ds
			}
		}
	}
	if len(light) == 0 {
		t.Fatal("no packages to check")
	}
	for pkg, ds := range light {
		for _, d := range ds {
			if d == storage || strings.HasPrefix(d, storage+"/drivers") {
				t.Errorf("%s links %s: the daemon must not link the store or a graph driver", pkg, d)
			}
		}
	}
}
