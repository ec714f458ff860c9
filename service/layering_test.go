// Package service_test checks the project's dependency direction,
// cmd → service → jobs → policy (DESIGN.md §1): storage jobs never link the
// service manager or bus libraries, and the policy imports no project
// package; and the daemon links no storage graph driver.
package service_test

import (
	"os/exec"
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

func TestDependencyDirection(t *testing.T) {
	rules := []struct {
		pattern   string
		forbidden []string
	}{
		{"./policy/...", []string{module + "/", "github.com/godbus/", "github.com/coreos/go-systemd/"}},
		{"./jobs/...", []string{module + "/service", module + "/cmd", "github.com/godbus/", "github.com/coreos/go-systemd/"}},
		{"./service/...", []string{module + "/cmd"}},
	}
	for _, r := range rules {
		for pkg, ds := range deps(t, r.pattern) {
			for _, d := range ds {
				for _, bad := range r.forbidden {
					if strings.HasPrefix(d, bad) && !strings.HasPrefix(d, pkg) && !(r.pattern == "./policy/..." && strings.HasPrefix(d, module+"/policy")) {
						t.Errorf("%s imports %s (forbidden for %s)", pkg, d, r.pattern)
					}
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
// daemon's and is not checked here.
func TestDaemonLinksNoGraphDriver(t *testing.T) {
	const storage = "go.podman.io/storage"
	for pkg, ds := range deps(t, "./service/...") {
		for _, d := range ds {
			if d == storage || strings.HasPrefix(d, storage+"/drivers") {
				t.Errorf("%s links %s: the daemon must not link the store or a graph driver", pkg, d)
			}
		}
	}
}
