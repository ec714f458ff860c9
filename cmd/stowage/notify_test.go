package main

import (
	"bytes"
	"strings"
	"testing"
)

func runNotifyCmd(t *testing.T, stateDir string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd(nil)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(append([]string{"--user", "--state-dir", stateDir, "notify"}, args...))
	err := root.Execute()
	return out.String(), err
}

// TestNotifyCmd: snooze stores the normalized reference (the form findings
// carry), snoozed lists it, unsnooze takes either form, twice is an error.
func TestNotifyCmd(t *testing.T) {
	dir := t.TempDir()
	if out, err := runNotifyCmd(t, dir, "snooze", "alpine:3"); err != nil || out != "snoozed docker.io/library/alpine:3\n" {
		t.Fatalf("snooze: %q %v", out, err)
	}
	out, err := runNotifyCmd(t, dir, "snoozed", "--format", "json")
	if err != nil || !strings.Contains(out, `"ref": "docker.io/library/alpine:3"`) {
		t.Fatalf("snoozed: %q %v", out, err)
	}
	if out, err := runNotifyCmd(t, dir, "unsnooze", "alpine:3"); err != nil || out != "unsnoozed docker.io/library/alpine:3\n" {
		t.Fatalf("unsnooze: %q %v", out, err)
	}
	if _, err := runNotifyCmd(t, dir, "unsnooze", "docker.io/library/alpine:3"); err == nil || !strings.Contains(err.Error(), "not snoozed") {
		t.Fatalf("second unsnooze: %v", err)
	}
	if out, err := runNotifyCmd(t, dir, "snoozed"); err != nil || out != "" {
		t.Fatalf("snoozed after unsnooze: %q %v", out, err)
	}
}
