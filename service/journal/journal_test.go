package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/test/testenv"
	"github.com/stowage/stowage/test/testjobs"
)

func TestFieldName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"job", "STOWAGE_JOB"},
		{"run_id", "STOWAGE_RUN_ID"},
		{"worker_Exit-Code", "STOWAGE_WORKER_EXIT_CODE"},
		{"  bytes ", "STOWAGE_BYTES"},
		{"é", ""},
		{strings.Repeat("x", 80), "STOWAGE_" + strings.Repeat("X", 56)},
		{"", ""},
	} {
		if got := FieldName(tc.in); got != tc.want {
			t.Errorf("FieldName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		l    slog.Level
		want int
	}{
		{slog.LevelDebug, 7}, {slog.LevelInfo, 6}, {slog.LevelInfo + 2, 5},
		{slog.LevelWarn, 4}, {slog.LevelError, 3}, {slog.LevelError + 4, 2},
	} {
		if got := Priority(tc.l); got != tc.want {
			t.Errorf("Priority(%v) = %d, want %d", tc.l, got, tc.want)
		}
	}
}

// Every report event kind (and every daemon kind) has a distinct 32-hex ID.
func TestMessageIDsCoverKinds(t *testing.T) {
	kinds := []string{KindJobStarted, KindJobFinished, KindJobFailed, KindPolicyInvalid,
		report.EventDriftDetected, report.EventSignatureRejected, report.EventSignatureRecovered,
		report.EventImageRemoved, report.EventImageUntagged, report.EventImagePulled,
		report.EventLayerRemoved, report.EventLayerCorrupted, report.EventVolumeRemoved,
		report.EventQuotaExceeded, report.EventNewerVersion}
	hex := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]string{}
	for _, k := range kinds {
		id := testIDs[k]
		if !hex.MatchString(id) {
			t.Errorf("kind %s: MESSAGE_ID %q is not 32 lower-case hex digits", k, id)
		}
		if other, dup := seen[id]; dup {
			t.Errorf("kinds %s and %s share MESSAGE_ID %s", k, other, id)
		}
		seen[id] = k
	}
	if len(testIDs) != len(kinds) {
		t.Errorf("MessageIDs has %d kinds, the test knows %d: update the test and the catalog",
			len(testIDs), len(kinds))
	}
}

func TestStderrFallback(t *testing.T) {
	var buf bytes.Buffer
	h := NewHandler(Options{Stderr: &buf, ForceStderr: true, Events: testjobs.Registry().EventKinds()})
	if h.UsesJournal() {
		t.Fatal("ForceStderr handler uses the journal")
	}
	log := slog.New(h).With(AttrJob, "prune")
	log.Debug("hidden")
	LogEvent(context.Background(), log, "prune", "r1", report.Event{
		Kind: report.EventImageRemoved, Severity: report.SeverityLow, Message: "removed a b",
		Image: "abc", Bytes: 10,
	})
	log.WithGroup("w").Error("two\nlines", AttrError, errors.New("bad thing"))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	want := []string{
		`<5>removed a b job=prune kind=image_removed job=prune run_id=r1 severity=low image=abc bytes=10`,
		`<3>two lines job=prune w_error="bad thing"`,
	}
	if !slices.Equal(lines, want) {
		t.Errorf("stderr lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// buildEmitter builds testdata/emit with the journal socket redirected
// (socket "" keeps go-systemd's default path).
func buildEmitter(t *testing.T, socket string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go toolchain needed to build the journal helper: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "emit")
	args := []string{"build", "-tags", testenv.Tags, "-o", bin}
	if socket != "" {
		args = append(args, "-ldflags", "-X github.com/coreos/go-systemd/v22/journal.journalSocket="+socket)
	}
	cmd := exec.Command(goBin, append(args, "./testdata/emit")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building helper: %v\n%s", err, out)
	}
	return bin
}

// parseNative decodes one datagram of the journal native protocol.
func parseNative(d []byte) (map[string]string, error) { return testenv.ParseJournalNative(d) }

func TestJournalDatagrams(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "journal.sock")
	bin := buildEmitter(t, socket)

	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan map[string]string, 100)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := l.Read(buf)
			if err != nil {
				close(got)
				return
			}
			e, err := parseNative(slices.Clone(buf[:n]))
			if err != nil {
				t.Errorf("datagram %q: %v", buf[:n], err)
			}
			got <- e
		}
	}()

	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if strings.TrimSpace(string(out)) != "true" {
		t.Fatalf("helper did not detect the journal socket: %q", out)
	}
	ids := testIDs
	var entries []map[string]string
	deadline := time.After(10 * time.Second)
	for len(entries) < len(ids)+6 {
		select {
		case e := <-got:
			entries = append(entries, e)
		case <-deadline:
			t.Fatalf("got %d journal entries, want %d", len(entries), len(ids)+6)
		}
	}
	kinds := slices.Sorted(maps.Keys(ids))
	for i, k := range kinds {
		e := entries[i]
		want := map[string]string{
			"MESSAGE":           "event " + k,
			"MESSAGE_ID":        ids[k],
			"PRIORITY":          "4",
			"SYSLOG_IDENTIFIER": "stowage",
			"STOWAGE_KIND":      k,
			"STOWAGE_JOB":       "prune",
			"STOWAGE_RUN_ID":    "run-" + k,
			"STOWAGE_SEVERITY":  "normal",
			"STOWAGE_IMAGE":     "img-" + k,
			"STOWAGE_REFERENCE": "localhost/ref:" + k,
			"STOWAGE_DIGEST":    "sha256:0123",
			"STOWAGE_BYTES":     "4096",
		}
		if k == report.EventNewerVersion {
			want["STOWAGE_NEWER"] = "localhost/ref:newer"
		}
		if !maps.Equal(e, want) {
			t.Errorf("entry %d (%s):\n got %v\nwant %v", i, k, e, want)
		}
	}
	// The daemon's run records (job started/finished/failed) and the
	// policy-invalid helper.
	for i, want := range []map[string]string{
		{"MESSAGE": "job started", "MESSAGE_ID": ids[KindJobStarted], "PRIORITY": "6",
			"STOWAGE_JOB": "prune", "STOWAGE_RUN_ID": "r-7", "STOWAGE_DRY_RUN": "true"},
		{"MESSAGE": "job finished", "MESSAGE_ID": ids[KindJobFinished], "PRIORITY": "6",
			"STOWAGE_RUN_ID": "r-7", "STOWAGE_DURATION": "1.5s", "STOWAGE_SUMMARY": "freed 3 images"},
		{"MESSAGE": "job failed", "MESSAGE_ID": ids[KindJobFailed], "PRIORITY": "3",
			"STOWAGE_JOB": "refresh", "STOWAGE_RUN_ID": "r-8", "STOWAGE_ERROR": "worker exited 1"},
		{"MESSAGE_ID": ids[KindPolicyInvalid], "PRIORITY": "3",
			"STOWAGE_POLICY_PATH": "/etc/stowage/policy.toml", "STOWAGE_ERROR": "policy.toml:3:1: unknown key"},
	} {
		e := entries[len(ids)+i]
		for k, v := range want {
			if e[k] != v {
				t.Errorf("helper entry %d: %s = %q, want %q (entry %v)", i, k, e[k], v, e)
			}
		}
	}
	entries = append(entries[:len(ids)], entries[len(ids)+4:]...)
	errEntry := entries[len(ids)]
	for k, v := range map[string]string{
		"MESSAGE": "worker\nfailed", "PRIORITY": "3", "STOWAGE_JOB": "verify",
		"STOWAGE_WORKER_ERROR": "exit status 1", "STOWAGE_WORKER_PID": "42",
		"SYSLOG_IDENTIFIER": "stowage",
	} {
		if errEntry[k] != v {
			t.Errorf("error entry %s = %q, want %q (entry %v)", k, errEntry[k], v, errEntry)
		}
	}
	if _, ok := errEntry["MESSAGE_ID"]; ok {
		t.Errorf("entry without a kind has a MESSAGE_ID: %v", errEntry)
	}
	dbg := entries[len(ids)+1]
	if dbg["PRIORITY"] != "7" || dbg["STOWAGE_MIXED_CASE_KEY"] != "v w" {
		t.Errorf("debug entry = %v", dbg)
	}

	// Without the socket the same binary falls back to stderr with <N> prefixes.
	l.Close()
	os.Remove(socket)
	cmd := exec.Command(bin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("helper without journal: %v", err)
	}
	if strings.TrimSpace(string(out)) != "false" {
		t.Fatalf("helper detected a journal that is gone: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != len(ids)+6 {
		t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), len(ids)+6, stderr.String())
	}
	if want := "<6>job started job=prune run_id=r-7 kind=job_started dry_run=true"; lines[len(ids)] != want {
		t.Errorf("stderr job line = %q, want %q", lines[len(ids)], want)
	}
	lines = append(lines[:len(ids)], lines[len(ids)+4:]...)
	for i, k := range kinds {
		if !strings.HasPrefix(lines[i], "<4>event "+k+" kind="+k+" ") {
			t.Errorf("stderr line %d = %q", i, lines[i])
		}
	}
	if want := `<3>worker failed job=verify worker_error="exit status 1" worker_pid=42`; lines[len(ids)] != want {
		t.Errorf("stderr error line = %q, want %q", lines[len(ids)], want)
	}
}

// parseCatalog returns the MESSAGE_IDs of a catalog file and checks each
// entry has a Subject.
func parseCatalog(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ids []string
	subject := map[string]bool{}
	cur := ""
	head := regexp.MustCompile(`^-- ([0-9a-f]{32})$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := head.FindStringSubmatch(line); m != nil {
			cur = m[1]
			ids = append(ids, cur)
			continue
		}
		if strings.HasPrefix(line, "-- ") {
			t.Errorf("malformed catalog header %q", line)
		}
		if cur != "" && strings.HasPrefix(line, "Subject: ") {
			subject[cur] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !subject[id] {
			t.Errorf("catalog entry %s has no Subject", id)
		}
	}
	return ids
}

func TestCatalogMatchesCode(t *testing.T) {
	code := slices.Sorted(maps.Values(testIDs))
	cat := parseCatalog(t, "stowage.catalog")
	slices.Sort(cat)
	if !slices.Equal(cat, code) {
		t.Errorf("catalog IDs %v\n    code IDs %v", cat, code)
	}

	// journald's own catalog compiler must accept the file and list them all.
	testenv.RequireTool(t, "journalctl")
	root := t.TempDir()
	catDir := filepath.Join(root, "usr/lib/systemd/catalog")
	if err := os.MkdirAll(catDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("stowage.catalog")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(catDir, "stowage.catalog"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/systemd/catalog"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("journalctl", "--root="+root, "--update-catalog").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("journalctl --update-catalog: %v\n%s", err, out)
	}
	out, err = exec.Command("journalctl", "--root="+root, "--list-catalog").Output()
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v", err)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		id, rest, _ := strings.Cut(line, " ")
		if !strings.HasPrefix(rest, "stowage: ") {
			t.Errorf("catalog line without Defined-By stowage: %q", line)
		}
		listed = append(listed, id)
	}
	slices.Sort(listed)
	if !slices.Equal(listed, code) {
		t.Errorf("journalctl lists %v\n      code has %v", listed, code)
	}
}

// When journald goes away after start, records still reach stderr.
func TestJournalGoneFallsBackToStderr(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "journal.sock")
	bin := buildEmitter(t, socket)
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "pause")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || first != "true\n" {
		t.Fatalf("helper start: %q %v", first, err)
	}
	l.Close()
	os.Remove(socket)
	stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	line := strings.TrimSpace(stderr.String())
	if !strings.HasPrefix(line, "<4>after journald left job=prune journal_error=") {
		t.Errorf("stderr = %q, want the record with a <4> prefix", line)
	}
}

// realJournalScript runs systemd-journald in a private mount namespace
// (tmpfs over /run and /var/log, our catalog bind-mounted over the system
// catalog dir), logs with the helper, and prints the entries as JSON
// followed by the catalog-expanded drift entry. Nothing on the host changes.
const realJournalScript = `set -eu
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/log
mount -t tmpfs tmpfs /var/lib/systemd/catalog
mount --bind "$CATDIR" /usr/lib/systemd/catalog
mkdir -p /run/systemd/journal
journalctl --update-catalog
/lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
jpid=$!
trap 'kill $jpid 2>/dev/null' EXIT
i=0
while [ ! -S /run/systemd/journal/socket ]; do
  i=$((i+1)); [ $i -lt 100 ] || { echo "journald did not start" >&2; exit 1; }
  sleep 0.1
done
"$EMIT" >/dev/null 2>"$EMIT_ERR"
journalctl --sync
journalctl -o json SYSLOG_IDENTIFIER=stowage
echo "--- catalog"
journalctl -x -o short MESSAGE_ID="$DRIFT_ID"
`

// The real systemd-journald stores our entries with their fields, and
// journalctl -x explains them from our catalog.
func TestRealJournald(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "unshare", "journalctl")
	if _, err := os.Stat("/lib/systemd/systemd-journald"); err != nil {
		t.Fatalf("systemd-journald not installed: %v", err)
	}
	bin := buildEmitter(t, "")
	catDir := t.TempDir()
	data, err := os.ReadFile("stowage.catalog")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(catDir, "stowage.catalog"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	errFile := filepath.Join(t.TempDir(), "emit.err")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", realJournalScript)
	cmd.Env = append(os.Environ(), "CATDIR="+catDir, "EMIT="+bin, "EMIT_ERR="+errFile,
		"DRIFT_ID="+testIDs[report.EventDriftDetected])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("journald run: %v\n%s", err, stderr.String())
	}
	if b, _ := os.ReadFile(errFile); len(b) > 0 {
		t.Errorf("helper wrote to stderr (journal not used?):\n%s", b)
	}
	entriesOut, catalogOut, ok := strings.Cut(string(out), "--- catalog\n")
	if !ok {
		t.Fatalf("no catalog section in output:\n%s", out)
	}
	ids := testIDs
	byID := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(entriesOut), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journal JSON %q: %v", line, err)
		}
		if id, ok := e["MESSAGE_ID"].(string); ok {
			byID[id] = e
		}
	}
	for kind, id := range ids {
		e, ok := byID[id]
		if !ok {
			t.Errorf("journald has no entry with MESSAGE_ID %s (%s)", id, kind)
			continue
		}
		if e["_TRANSPORT"] != "journal" || e["SYSLOG_IDENTIFIER"] != "stowage" {
			t.Errorf("%s: transport %v identifier %v", kind, e["_TRANSPORT"], e["SYSLOG_IDENTIFIER"])
		}
	}
	drift := byID[ids["drift_detected"]]
	for k, v := range map[string]string{"STOWAGE_REFERENCE": "localhost/ref:drift_detected",
		"STOWAGE_DIGEST": "sha256:0123", "STOWAGE_IMAGE": "img-drift_detected", "PRIORITY": "4",
		"STOWAGE_BYTES": "4096", "MESSAGE": "event drift_detected"} {
		if drift[k] != v {
			t.Errorf("drift entry %s = %v, want %q", k, drift[k], v)
		}
	}
	wantCat := "The refresh job found that the registry's digest for localhost/ref:drift_detected"
	t.Logf("journalctl -x:\n%s", catalogOut)
	if !strings.Contains(strings.Join(strings.Fields(catalogOut), " "), wantCat) {
		t.Errorf("journalctl -x did not expand the catalog entry:\n%s", catalogOut)
	}
}

// testIDs is the MESSAGE_ID table of the daemon's kinds and the real jobs'.
var testIDs = MessageIDs(testjobs.Registry().EventKinds())
