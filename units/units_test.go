// Package units holds stowage's systemd units, D-Bus activation and policy
// files and the polkit action; its tests check them with the real tools.
package units

import (
	"bufio"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/stowage/stowage/test/testenv"
)

const (
	busName   = "io.github.stowage.Stowage1"
	objPath   = "/io/github/stowage/Stowage1"
	ifaceName = "io.github.stowage.Stowage1.Manager"
	nobody    = 65534
)

// stage copies units of one mode to a temp dir with ExecStart pointing at a
// real stowage binary (systemd-analyze verify checks it is executable).
func stage(t *testing.T, mode string) string {
	t.Helper()
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	for _, u := range []string{"stowage.socket", "stowage.service", "stowage.timer", "stowage-metrics.socket"} {
		b, err := os.ReadFile(filepath.Join(mode, u))
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), "/usr/bin/stowage", bin))
		if err := os.WriteFile(filepath.Join(dir, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func verify(t *testing.T, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command("systemd-analyze", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestUnitsVerify(t *testing.T) {
	testenv.RequireTool(t, "systemd-analyze")
	sys := stage(t, "system")
	verify(t, nil, "verify", "--man=no", filepath.Join(sys, "stowage.service"),
		filepath.Join(sys, "stowage.socket"), filepath.Join(sys, "stowage.timer"), filepath.Join(sys, "stowage-metrics.socket"))

	user := stage(t, "user")
	rt := t.TempDir() // the user manager needs a runtime directory
	verify(t, []string{"XDG_RUNTIME_DIR=" + rt}, "--user", "verify", "--man=no",
		filepath.Join(user, "stowage.service"), filepath.Join(user, "stowage.socket"), filepath.Join(user, "stowage.timer"),
		filepath.Join(user, "stowage-metrics.socket"))
}

// TestSystemServiceExposure holds the hardening to the bar: an
// overall exposure of at most 2.5 in `systemd-analyze security`.
func TestSystemServiceExposure(t *testing.T) {
	testenv.RequireTool(t, "systemd-analyze")
	sys := stage(t, "system")
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", "--no-pager",
		filepath.Join(sys, "stowage.service")).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for stowage.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("system stowage.service exposure: %.1f", level)
	if level > 2.5 {
		t.Errorf("exposure %.1f > 2.5:\n%s", level, out)
	}
}

// iniKeys reads KEY=VALUE lines of a unit-style file, by "Section.Key".
func iniKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string][]string{}
	sec := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			sec = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			keys[sec+"."+k] = append(keys[sec+"."+k], v)
		}
	}
	return keys
}

func want(t *testing.T, file string, keys map[string][]string, key, value string) {
	t.Helper()
	for _, v := range keys[key] {
		if v == value {
			return
		}
	}
	t.Errorf("%s: %s=%q, want %q", file, key, keys[key], value)
}

// TestUnitContract checks the settings the daemon and the tests rely on.
func TestUnitContract(t *testing.T) {
	for _, mode := range []string{"user", "system"} {
		sock := iniKeys(t, filepath.Join(mode, "stowage.socket"))
		svc := iniKeys(t, filepath.Join(mode, "stowage.service"))
		tmr := iniKeys(t, filepath.Join(mode, "stowage.timer"))
		path := "/run/stowage/stowage.sock"
		mflag := "--system"
		if mode == "user" {
			path, mflag = "%t/stowage/stowage.sock", "--user"
		}
		want(t, mode+"/stowage.socket", sock, "Socket.ListenStream", path)
		want(t, mode+"/stowage.socket", sock, "Socket.FileDescriptorName", "control")
		want(t, mode+"/stowage.service", svc, "Service.Type", "notify")
		want(t, mode+"/stowage.service", svc, "Service.NotifyAccess", "main")
		want(t, mode+"/stowage.service", svc, "Service.Restart", "on-failure")
		want(t, mode+"/stowage.service", svc, "Service.ExecReload", "/bin/kill -HUP $MAINPID")
		want(t, mode+"/stowage.service", svc, "Service.ExecStart", "/usr/bin/stowage daemon "+mflag+" --idle-exit 5m")
		if len(svc["Service.WatchdogSec"]) != 1 {
			t.Errorf("%s/stowage.service: no WatchdogSec", mode)
		}
		// The optional metrics socket hands the daemon an fd named
		// "metrics" (daemon.MetricsListenerName), on loopback only.
		msock := iniKeys(t, filepath.Join(mode, "stowage-metrics.socket"))
		want(t, mode+"/stowage-metrics.socket", msock, "Socket.ListenStream", "127.0.0.1:9647")
		want(t, mode+"/stowage-metrics.socket", msock, "Socket.FileDescriptorName", "metrics")
		want(t, mode+"/stowage-metrics.socket", msock, "Socket.Service", "stowage.service")
		if mode == "system" {
			// ProtectSystem=strict: the textfile for node_exporter
			// ([metrics] textfile = "auto") must be writable.
			want(t, mode+"/stowage.service", svc, "Service.ProtectSystem", "strict")
			want(t, mode+"/stowage.service", svc, "Service.ReadWritePaths", "-/var/lib/prometheus/node-exporter")
		}
		want(t, mode+"/stowage.timer", tmr, "Timer.Persistent", "true")
		want(t, mode+"/stowage.timer", tmr, "Timer.Unit", "stowage.service")
		if len(tmr["Timer.RandomizedDelaySec"]) != 1 {
			t.Errorf("%s/stowage.timer: no RandomizedDelaySec", mode)
		}
	}
	for file, wantExec := range map[string]string{
		"dbus/session.service": "/usr/bin/stowage daemon --user --idle-exit 5m",
		"dbus/system.service":  "/bin/false",
	} {
		k := iniKeys(t, file)
		want(t, file, k, "D-BUS Service.Name", busName)
		want(t, file, k, "D-BUS Service.SystemdService", "stowage.service")
		want(t, file, k, "D-BUS Service.Exec", wantExec)
	}
	want(t, "dbus/system.service", iniKeys(t, "dbus/system.service"), "D-BUS Service.User", "root")
}

func TestPolkitAction(t *testing.T) {
	b, err := os.ReadFile("polkit/io.github.stowage.policy")
	if err != nil {
		t.Fatal(err)
	}
	var pc struct {
		Actions []struct {
			ID          string `xml:"id,attr"`
			Desc        string `xml:"description"`
			Message     string `xml:"message"`
			AllowAny    string `xml:"defaults>allow_any"`
			AllowActive string `xml:"defaults>allow_active"`
		} `xml:"action"`
	}
	if err := xml.Unmarshal(b, &pc); err != nil {
		t.Fatalf("polkit action file: %v", err)
	}
	if len(pc.Actions) != 1 || pc.Actions[0].ID != "io.github.stowage.manage" {
		t.Fatalf("actions = %+v, want io.github.stowage.manage", pc.Actions)
	}
	a := pc.Actions[0]
	if a.Desc == "" || a.Message == "" {
		t.Error("action without description or message")
	}
	if a.AllowAny != "auth_admin" || !strings.HasPrefix(a.AllowActive, "auth_admin") {
		t.Errorf("defaults any=%q active=%q: only administrators may manage", a.AllowAny, a.AllowActive)
	}
}

// systemBus starts a real dbus-daemon with Debian's system-bus default
// policy (deny own, deny method calls) plus units/dbus' policy file.
func systemBus(t *testing.T) string {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "dbus-daemon", "busctl")
	return testenv.StartSystemDBus(t, "dbus/io.github.stowage.Stowage1.conf").Address
}

// denied reports whether busctl failed because the bus policy refused.
func denied(err error) bool {
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "access denied") || strings.Contains(m, "not allowed") || strings.Contains(m, "rejected")
}

type manager struct{}

func (manager) ListJobs() ([]string, *dbus.Error) { return []string{"prune"}, nil }

type other struct{}

func (other) Secret() (string, *dbus.Error) { return "leak", nil }

// TestSystemBusPolicy proves the system.d file on a real dbus-daemon: only
// root owns the name; anyone may call the Manager interface (the daemon asks
// polkit for mutations); other interfaces of the name stay closed.
func TestSystemBusPolicy(t *testing.T) {
	addr := systemBus(t)
	requestName := []string{"--address=" + addr, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
		"org.freedesktop.DBus", "RequestName", "su", busName, "0"}

	if _, err := testenv.RunAs(nobody, nobody, "busctl", requestName...); err == nil || !denied(err) {
		t.Errorf("non-root RequestName(%s): %v, want access denied", busName, err)
	}

	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Export(manager{}, objPath, ifaceName); err != nil {
		t.Fatal(err)
	}
	if err := conn.Export(other{}, objPath, "io.github.stowage.Stowage1.Internal"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("root RequestName: %v %v", reply, err)
	}

	var out string
	for i := 0; i < 50; i++ { // the name is owned synchronously; retry only for safety
		out, err = testenv.RunAs(nobody, nobody, "busctl", "--address="+addr, "call", busName, objPath, ifaceName, "ListJobs")
		if err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, "prune") {
		t.Errorf("non-root call of %s.ListJobs: %q %v, want allowed", ifaceName, out, err)
	}
	out, err = testenv.RunAs(nobody, nobody, "busctl", "--address="+addr, "call", busName, objPath,
		"io.github.stowage.Stowage1.Internal", "Secret")
	if err == nil || !denied(err) {
		t.Errorf("non-root call of another interface: %q %v, want access denied", out, err)
	}
	// Introspectable is open: the call reaches the object (which, here,
	// does not implement it) instead of being rejected by the bus.
	_, err = testenv.RunAs(nobody, nobody, "busctl", "--address="+addr, "call", busName, objPath,
		"org.freedesktop.DBus.Introspectable", "Introspect")
	if err == nil || denied(err) {
		t.Errorf("non-root Introspect: %v, want the object's own error", err)
	}
}

// agentBusName is agent.BusName (units imports no project package).
const agentBusName = "io.github.stowage.Agent1"

// TestAgentUnit: the session agent's user unit verifies, starts with the
// graphical session, is ready once it owns its session bus name, and is
// not run for root or system users (the greeter's session).
func TestAgentUnit(t *testing.T) {
	testenv.RequireTool(t, "systemd-analyze")
	bin := testenv.Stowage(t)
	dir := t.TempDir()
	b, err := os.ReadFile("user/stowage-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	staged := filepath.Join(dir, "stowage-agent.service")
	if err := os.WriteFile(staged, []byte(strings.ReplaceAll(string(b), "/usr/bin/stowage", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	verify(t, []string{"XDG_RUNTIME_DIR=" + t.TempDir()}, "--user", "verify", "--man=no", staged)

	k := iniKeys(t, "user/stowage-agent.service")
	f := "user/stowage-agent.service"
	want(t, f, k, "Unit.PartOf", "graphical-session.target")
	want(t, f, k, "Unit.After", "graphical-session.target")
	want(t, f, k, "Unit.ConditionUser", "!@system")
	want(t, f, k, "Service.Type", "dbus")
	want(t, f, k, "Service.BusName", agentBusName)
	want(t, f, k, "Service.ExecStart", "/usr/bin/stowage agent")
	want(t, f, k, "Service.Restart", "on-failure")
	want(t, f, k, "Install.WantedBy", "graphical-session.target")
}

// TestAgentAutostart: the XDG autostart entry is valid, runs the agent,
// and systemd's xdg-autostart-generator (systemd 252) skips it, so that a
// session with a systemd user manager runs the agent once, from the unit.
// The same entry without X-systemd-skip does generate a unit: the check
// can fail.
func TestAgentAutostart(t *testing.T) {
	const entry = "../etc/xdg/autostart/stowage-agent.desktop"
	testenv.RequireTool(t, "desktop-file-validate")
	if out, err := exec.Command("desktop-file-validate", entry).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("desktop-file-validate: %v\n%s", err, out)
	}
	k := iniKeys(t, entry)
	want(t, entry, k, "Desktop Entry.Type", "Application")
	want(t, entry, k, "Desktop Entry.Exec", "/usr/bin/stowage agent")
	want(t, entry, k, "Desktop Entry.X-GNOME-Autostart-enabled", "true")
	want(t, entry, k, "Desktop Entry.X-systemd-skip", "true")

	const gen = "/usr/lib/systemd/user-generators/systemd-xdg-autostart-generator"
	if _, err := os.Stat(gen); err != nil {
		t.Fatalf("%s: %v (package systemd)", gen, err)
	}
	data, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	// The generator skips entries whose Exec= binary does not exist.
	data = []byte(strings.ReplaceAll(string(data), "/usr/bin/stowage", testenv.Stowage(t)))
	generate := func(content string) []string {
		t.Helper()
		cfg, out := t.TempDir(), t.TempDir()
		auto := filepath.Join(cfg, "autostart")
		if err := os.MkdirAll(auto, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(auto, "stowage-agent.desktop"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(gen, out, out, out)
		// Only our directory: XDG_CONFIG_HOME empty of entries, no system dirs.
		cmd.Env = append(os.Environ(), "XDG_CONFIG_DIRS="+cfg, "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_DIRS="+t.TempDir())
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", gen, err, b)
		}
		var units []string
		_ = filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".service") {
				units = append(units, filepath.Base(p))
			}
			return nil
		})
		return units
	}
	if units := generate(string(data)); len(units) != 0 {
		t.Errorf("the generator made %v from the shipped entry; want none (X-systemd-skip)", units)
	}
	control := strings.ReplaceAll(string(data), "X-systemd-skip=true", "")
	if units := generate(control); len(units) == 0 {
		t.Error("the generator made no unit from the entry without X-systemd-skip: the check above proves nothing")
	}
}
