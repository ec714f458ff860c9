package daemon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/test/testenv"
)

// refreshReport is the part of a refresh report this test reads.
type refreshReport struct {
	PullsDeferred string `json:"pulls_deferred"`
	Results       []struct {
		Reference     string `json:"reference"`
		Status        string `json:"status"`
		PulledImageID string `json:"pulled_image_id"`
		Note          string `json:"note"`
	} `json:"results"`
}

// TestMeteredDefersPullsUntilCleared: the real daemon, reading the system
// bus given by DBUS_SYSTEM_BUS_ADDRESS, runs a pull-mode refresh against a
// real registry while NetworkManager reports a metered connection: the run
// reports the drift and pulls nothing, and says why. When NetworkManager
// reports the connection unmetered (PropertiesChanged) for longer than the
// settle time, the daemon starts a catch-up run on its own, which pulls the
// new image. NetworkManager is
// played by a stand-in peer on a private system bus (testenv.HostPeer):
// this machine has no metered connection to report.
func TestMeteredDefersPullsUntilCleared(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman", "skopeo", "docker-registry", "dbus-daemon")
	bus := testenv.StartDBus(t, "system")
	nm := testenv.StartNetworkManager(t, bus.Address, 1) // NM_METERED_YES

	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	builder, host := testenv.NewPodman(t, "vfs"), testenv.NewPodman(t, "vfs")
	regConf := fmt.Sprintf("unqualified-search-registries = []\n[[registry]]\nlocation = %q\ninsecure = true\n", reg.Addr)
	for _, p := range []*testenv.Podman{builder, host} {
		if err := os.WriteFile(filepath.Join(p.Dir(), "registries.conf"), []byte(regConf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref := reg.Addr + "/metered/app:1"
	push := func(content string) {
		builder.Import(t, "localhost/src:latest", map[string]string{"f": content})
		builder.Run(t, "push", "-q", "--tls-verify=false", "localhost/src:latest", "docker://"+ref)
	}
	push("first")
	host.Run(t, "pull", "-q", "--tls-verify=false", ref)
	imageID := func() string { return host.Run(t, "image", "inspect", "--format", "{{.Id}}", ref) }
	old := imageID()
	push("second") // the tag drifts

	dir := t.TempDir()
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[schedule]\njitter = \"0\"\n[refresh]\nmode = \"pull\"\nnewer = \"off\"\n[notify]\ndesktop = false\n[metrics]\ntextfile = \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testenv.Stowage(t)
	sock := filepath.Join(dir, "ctl.sock")
	env := append(append([]string{}, host.Env...), "DBUS_SYSTEM_BUS_ADDRESS="+bus.Address, "DBUS_SESSION_BUS_ADDRESS=")
	args := append(host.Flags(), "--user", "--state-dir", filepath.Join(dir, "state"), "--policy", pol, "daemon", "--socket", sock, "--deferred-settle", "2s")
	testenv.StartDaemon(t, bin, sock, env, args...)

	out, err := testenv.RunErr(nil, bin, "--user", "trigger", "refresh", "--wait", "--format", "json", "--socket", sock)
	if err != nil {
		t.Fatalf("trigger: %v\n%s", err, out)
	}
	var first api.Run
	if err := json.Unmarshal([]byte(out), &first); err != nil || first.Outcome != api.OutcomeSucceeded {
		t.Fatalf("metered run %s: %v", out, err)
	}
	var rep refreshReport
	if err := json.Unmarshal(first.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Status != "drifted" || rep.Results[0].PulledImageID != "" || rep.Results[0].Note != "pull deferred: metered connection" {
		t.Fatalf("metered run results: %+v", rep.Results)
	}
	if rep.PullsDeferred != "metered connection" || !strings.Contains(first.Summary, "pulls deferred: metered connection (1 not pulled)") {
		t.Fatalf("metered run does not say pulls were deferred: %q, summary %q", rep.PullsDeferred, first.Summary)
	}
	if got := imageID(); got != old {
		t.Fatalf("the metered run pulled: %s now points to %s", ref, got)
	}

	// Still metered, just guessed (NM_METERED_GUESS_YES): no catch-up.
	nm.Set(uint32(3))
	time.Sleep(time.Second)
	if l := latest(t, bin, sock); l.ID != first.ID {
		t.Fatalf("a run started while still metered: %+v", l)
	}

	// Unmetered for a moment only (a link coming up, NetworkManager
	// restarting): within the settle time, so no catch-up.
	nm.Set(uint32(2))
	time.Sleep(500 * time.Millisecond)
	nm.Set(uint32(1))
	time.Sleep(3 * time.Second)
	if l := latest(t, bin, sock); l.ID != first.ID {
		t.Fatalf("a run started on a moment's unmetered connection: %+v", l)
	}

	nm.Set(uint32(2)) // NM_METERED_NO, for good
	var catchUp api.Run
	waitFor(t, "the catch-up run after the connection became unmetered", func() bool {
		catchUp = latest(t, bin, sock)
		return catchUp.ID != first.ID && catchUp.Outcome.Done()
	})
	if catchUp.Outcome != api.OutcomeSucceeded || strings.Contains(catchUp.Summary, "deferred") {
		t.Fatalf("catch-up run: %+v", catchUp)
	}
	rep = refreshReport{}
	if err := json.Unmarshal(catchUp.Report, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].PulledImageID == "" || rep.PullsDeferred != "" {
		t.Fatalf("catch-up run results: %+v", rep)
	}
	if got := imageID(); got != rep.Results[0].PulledImageID || got == old {
		t.Fatalf("after the catch-up %s points to %s, want the pulled %s", ref, got, rep.Results[0].PulledImageID)
	}
}

// latest is the newest refresh run, as `stowage report refresh` shows it.
func latest(t *testing.T, bin, sock string) api.Run {
	t.Helper()
	out, err := testenv.RunErr(nil, bin, "--user", "report", "refresh", "--format", "json", "--socket", sock)
	var r api.Run
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		t.Fatalf("report: %v %v\n%s", err, jerr, out)
	}
	return r
}
