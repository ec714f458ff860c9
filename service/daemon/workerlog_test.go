package daemon_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/test/testenv"
)

// TestWorkerRecordsReachTheJournal: a real daemon runs a real prune worker
// against a real podman store; the worker's JSON log record about the image
// it removed reaches the journal as one entry with the record's level,
// its attributes as STOWAGE_* fields and the run's own fields. This host
// has no journald, so the daemon is built with go-systemd's journal socket
// redirected to a datagram socket the test reads (the native protocol, as
// journald receives it); test/e2e/run.sh checks the same against journald.
func TestWorkerRecordsReachTheJournal(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	const ref = "localhost/workerlog/x:1"
	id := p.Import(t, ref, map[string]string{"/f": "worker log"})

	dir := t.TempDir()
	sink := testenv.ListenJournal(t, dir)
	bin := testenv.BuildStowage(t, sink.Path)
	pol := filepath.Join(dir, "stowage.toml")
	// A one-byte quota: the image is a removal candidate.
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\n[prune]\nquota = \"1\"\nmin_age = \"0\"\nkeep_last = 0\ndangling = false\norphan_layers = false\n[notify]\ndesktop = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	args := append(p.Flags(), "--user", "--state-dir", filepath.Join(dir, "state"), "--policy", pol, "daemon", "--socket", sock)
	testenv.StartDaemon(t, bin, sock, p.Env, args...)

	out, err := testenv.RunErr(nil, bin, "--user", "trigger", "prune", "--wait", "--format", "json", "--socket", sock)
	if err != nil {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	var run api.Run
	if err := json.Unmarshal([]byte(out), &run); err != nil || run.Outcome != api.OutcomeSucceeded {
		t.Fatalf("run %s: %v", out, err)
	}

	var rec map[string]string
	waitFor(t, "the worker's record in the journal", func() bool {
		entries, errs := sink.Entries()
		if len(errs) > 0 {
			t.Fatalf("undecodable datagrams: %v", errs)
		}
		for _, e := range entries {
			if e["STOWAGE_SOURCE"] == "worker" && e["STOWAGE_IMAGE"] == id {
				rec = e
				return true
			}
		}
		return false
	})
	for k, v := range map[string]string{
		"PRIORITY":          "6",
		"SYSLOG_IDENTIFIER": "stowage",
		"STOWAGE_JOB":       "prune",
		"STOWAGE_RUN_ID":    run.ID,
		"STOWAGE_TRIGGER":   string(api.TriggerManual),
		"STOWAGE_REFERENCE": ref,
		"STOWAGE_REASON":    "quota",
	} {
		if rec[k] != v {
			t.Errorf("%s = %q, want %q", k, rec[k], v)
		}
	}
	if !strings.HasPrefix(rec["MESSAGE"], "removed image image="+id) {
		t.Errorf("MESSAGE = %q, want the record's message and its attributes", rec["MESSAGE"])
	}
	if _, ok := rec["MESSAGE_ID"]; ok {
		t.Errorf("a worker record has a MESSAGE_ID: %v", rec)
	}
	if t.Failed() {
		t.Logf("entry: %v", rec)
	}
}
