package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/service/agent"
	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/dbusapi"
	"github.com/stowage/stowage/test/testenv"
)

// runsBackend serves canned runs to GetReport: the system daemon's
// D-Bus object (the real dbusapi server) without workers.
type runsBackend struct {
	mu   sync.Mutex
	runs map[string]string
}

func (b *runsBackend) ListJobs(context.Context) ([]dbusapi.Job, error) { return nil, nil }
func (b *runsBackend) RunJob(context.Context, string, bool) (string, error) {
	return "", fmt.Errorf("not here")
}
func (b *runsBackend) RecentRuns(context.Context, time.Time) ([]dbusapi.RunRef, error) {
	return nil, nil
}
func (b *runsBackend) Pull(context.Context, string) (string, error) {
	return "", fmt.Errorf("not here")
}
func (b *runsBackend) Reload(context.Context) error        { return nil }
func (b *runsBackend) Pin(context.Context, string) error   { return nil }
func (b *runsBackend) Unpin(context.Context, string) error { return nil }
func (b *runsBackend) GetReport(_ context.Context, id string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	js, ok := b.runs[id]
	if !ok {
		return "", fmt.Errorf("%w: %s", dbusapi.ErrUnknownRun, id)
	}
	return js, nil
}

// add records a finished refresh run with the given findings and returns its id.
func (b *runsBackend) add(t *testing.T, id string, evs ...report.Event) {
	t.Helper()
	rep, err := json.Marshal(report.Common{Job: "refresh", Summary: "s", Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(api.Run{ID: id, Job: "refresh", Outcome: api.OutcomeSucceeded, Report: rep})
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.runs[id] = string(js)
	b.mu.Unlock()
}

// notifications records Notify bodies on the session bus.
type notifications struct{ bodies chan string }

func (n *notifications) Notify(app string, replaces uint32, icon, summary, body string, actions []string,
	hints map[string]dbus.Variant, timeout int32) (uint32, *dbus.Error) {
	n.bodies <- body
	return 1, nil
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func drift(ref, severity string) report.Event {
	return report.Event{Kind: report.EventDriftDetected, Severity: report.Severity(severity), Topic: "refresh:" + ref,
		Reference: ref, Digest: "sha256:aa", Message: ref + " drifted (" + severity + ")"}
}

// TestAgentCommand runs `stowage agent` as the desktop session would: it
// applies the user's [notify] policy (min_urgency, re-read on SIGHUP),
// keeps its memory in $XDG_STATE_HOME/stowage/agent, runs once per session
// and stops cleanly on SIGTERM.
func TestAgentCommand(t *testing.T) {
	bin := testenv.Stowage(t)
	sysBus := testenv.StartDBus(t, "system")
	sessionBus := testenv.StartDBus(t, "session")

	sysConn, err := dbusapi.ConnectAddress(sysBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer sysConn.Close()
	be := &runsBackend{runs: map[string]string{}}
	srv, err := dbusapi.Export(dbusapi.Options{Conn: sysConn, Backend: be, RequireAuth: true, Status: dbusapi.Status{Mode: "system"}})
	if err != nil {
		t.Fatal(err)
	}
	sessConn, err := dbusapi.ConnectAddress(sessionBus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer sessConn.Close()
	ns := &notifications{bodies: make(chan string, 16)}
	if err := sessConn.Export(ns, "/org/freedesktop/Notifications", "org.freedesktop.Notifications"); err != nil {
		t.Fatal(err)
	}
	if _, err := sessConn.RequestName("org.freedesktop.Notifications", dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}

	home := t.TempDir()
	userPolicy := filepath.Join(home, ".config", "stowage", "stowage.toml")
	if err := os.MkdirAll(filepath.Dir(userPolicy), 0o755); err != nil {
		t.Fatal(err)
	}
	writePolicy := func(body string) {
		if err := os.WriteFile(userPolicy, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy("version = 1\n[notify]\nmin_urgency = \"critical\"\n")
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "XDG_STATE_HOME=" + filepath.Join(home, ".local", "state"),
		"DBUS_SYSTEM_BUS_ADDRESS=" + sysBus.Address, "DBUS_SESSION_BUS_ADDRESS=" + sessionBus.Address,
	}
	start := func() (*exec.Cmd, *lockedLog) {
		cmd := exec.Command(bin, "agent", "--log-level", "debug")
		cmd.Env = env
		log := &lockedLog{}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, log
	}
	cmd, log := start()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	waitFor(t, "the agent owns its session name", func() bool {
		var owner string
		return sessConn.BusObject().Call("org.freedesktop.DBus.GetNameOwner", 0, agent.BusName).Store(&owner) == nil
	})
	waitForLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(log.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("agent did not log %q:\n%s", what, log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitForLog("watching the system service")

	// min_urgency = "critical": only the critical finding is shown.
	be.add(t, "run-1", drift("localhost/a:1", "normal"), drift("localhost/b:1", "critical"))
	if err := srv.EmitJobFinished("refresh", "run-1", "succeeded", "s"); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-ns.bodies:
		if !strings.Contains(body, "localhost/b:1 drifted") || strings.Contains(body, "localhost/a:1") {
			t.Fatalf("notification body %q, want only the critical finding", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no notification:\n%s", log.String())
	}
	if _, err := os.Stat(filepath.Join(home, ".local", "state", "stowage", "agent", "state.db")); err != nil {
		t.Errorf("agent state: %v", err)
	}

	// A second agent in the same session steps back.
	out, err := exec.Command("env", append([]string{"-i"}, append(env, bin, "agent")...)...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "another stowage agent") {
		t.Errorf("second agent: %v\n%s", err, out)
	}

	// SIGHUP re-reads the user's policy: now a low finding is shown, and
	// the normal one seen (but filtered) before.
	writePolicy("version = 1\n[notify]\nmin_urgency = \"low\"\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitForLog("policy re-read")
	be.add(t, "run-2", drift("localhost/a:1", "normal"), drift("localhost/b:1", "critical"), drift("localhost/c:1", "low"))
	if err := srv.EmitJobFinished("refresh", "run-2", "succeeded", "s"); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-ns.bodies:
		if !strings.Contains(body, "localhost/a:1") || !strings.Contains(body, "localhost/c:1") || strings.Contains(body, "localhost/b:1") {
			t.Fatalf("notification body %q, want the normal and low findings only", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no notification after SIGHUP:\n%s", log.String())
	}

	// topics: only the verify family is shown now.
	writePolicy("version = 1\n[notify]\nmin_urgency = \"low\"\ntopics = [\"verify\"]\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second policy re-read", func() bool { return strings.Count(log.String(), "policy re-read") >= 2 })
	sig := report.Event{Kind: report.EventSignatureRejected, Severity: report.SeverityCritical, Topic: "verify:localhost/v:1",
		Reference: "localhost/v:1", Message: "localhost/v:1 signature rejected"}
	be.add(t, "run-3", drift("localhost/d:1", "critical"), sig)
	if err := srv.EmitJobFinished("refresh", "run-3", "succeeded", "s"); err != nil {
		t.Fatal(err)
	}
	select {
	case body := <-ns.bodies:
		if !strings.Contains(body, "localhost/v:1 signature rejected") || strings.Contains(body, "localhost/d:1") {
			t.Fatalf("notification body %q, want the verify finding only", body)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no notification with topics = [verify]:\n%s", log.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("agent exit on SIGTERM: %v\n%s", err, log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentNoSessionBus: without a session bus the agent says why and
// exits 1, creating nothing (it never autolaunches a bus).
func TestAgentNoSessionBus(t *testing.T) {
	bin := testenv.Stowage(t)
	home := t.TempDir()
	cmd := exec.Command(bin, "agent")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "the session bus is needed") {
		t.Fatalf("agent without a session bus: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(home); len(entries) != 0 {
		t.Errorf("agent created %v in $HOME", entries)
	}
}
