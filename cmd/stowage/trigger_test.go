package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestTriggerJobNames (issue 12 item 14): `stowage trigger ""` and
// `stowage trigger nope` say what is wrong and which jobs exist, and the
// control API answers both, and any unknown endpoint, with a JSON error
// body, against a real daemon process.
func TestTriggerJobNames(t *testing.T) {
	testenv.RequireRoot(t)
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	// Not under t.TempDir(): podman refuses runroots over 50 bytes.
	store, err := os.MkdirTemp("", "stwg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(store) })
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	testenv.StartDaemon(t, bin, sock, nil, "--user", "--state-dir", filepath.Join(dir, "state"),
		"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs",
		"--policy", pol, "daemon", "--socket", sock)
	jobs := "one of " + strings.Join(registryOf(allJobs()).Names(), ", ")

	// The CLI.
	for _, c := range []struct{ job, want string }{
		{"", "stowage: trigger: job name is empty; " + jobs},
		{"nope", `stowage: trigger: unknown job "nope"; ` + jobs},
	} {
		out, err := testenv.RunErr(nil, bin, "--user", "trigger", c.job, "--socket", sock)
		if err == nil || !strings.HasSuffix(err.Error(), c.want) {
			t.Errorf("trigger %q: %v (stdout %q), want exit 1 and %q", c.job, err, out, c.want)
		}
	}
	if _, err := testenv.RunErr(nil, bin, "--user", "report", "", "--socket", sock); err == nil || !strings.Contains(err.Error(), "report: run id or job name is empty") {
		t.Errorf(`report "": %v`, err)
	}

	// The control API, spoken to directly.
	hc := &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, c := range []struct {
		method, path string
		code         int
		want         string
	}{
		{"POST", "/v1/jobs//runs", 400, "job name is empty; " + jobs},
		{"GET", "/v1/jobs//last", 400, "job name is empty; " + jobs},
		{"POST", "/v1/jobs/nope/runs", 404, `unknown job "nope"; ` + jobs},
		{"GET", "/v1/jobs/nope/last", 404, `unknown job "nope"; ` + jobs},
		{"GET", "/v1/nothing", 404, "no such endpoint: GET /v1/nothing"},
	} {
		req, err := http.NewRequestWithContext(t.Context(), c.method, "http://stowage"+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		if resp.StatusCode != c.code || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &e) != nil || e.Error != c.want {
			t.Errorf("%s %s: %s %q %s, want %d application/json {\"error\":%q}", c.method, c.path, resp.Status, resp.Header.Get("Content-Type"), body, c.code, c.want)
		}
	}
}
