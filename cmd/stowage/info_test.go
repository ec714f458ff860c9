package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// podmanInfoStore is the part of podman info's and stowage info's JSON that
// names the store (the same field names on purpose).
type podmanInfoStore struct {
	Store struct {
		GraphRoot       string `json:"graphRoot"`
		RunRoot         string `json:"runRoot"`
		GraphDriverName string `json:"graphDriverName"`
	} `json:"store"`
}

func decodeStore(t *testing.T, who, out string) podmanInfoStore {
	t.Helper()
	var s podmanInfoStore
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%s: %v\n%s", who, err, out)
	}
	if s.Store.GraphRoot == "" || s.Store.RunRoot == "" || s.Store.GraphDriverName == "" {
		t.Fatalf("%s names no store:\n%s", who, out)
	}
	return s
}

// stowageInfo is `stowage info --format json`'s source section.
type stowageInfo struct {
	podmanInfoStore
	Source struct {
		Kind   string `json:"kind"`
		Cached bool   `json:"cached"`
	} `json:"source"`
}

// TestInfoMatchesPodman: as root, `stowage info` names the store `podman
// info` names, for a CONTAINERS_STORAGE_CONF store and with explicit flags
// (which reach podman).
func TestInfoMatchesPodman(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman")
	dir, err := os.MkdirTemp("", "stwg-info-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	conf := filepath.Join(dir, "storage.conf")
	body := "[storage]\ndriver = \"vfs\"\ngraphroot = \"" + dir + "/g\"\nrunroot = \"" + dir + "/r\"\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"CONTAINERS_STORAGE_CONF=" + conf}
	bin := testenv.Stowage(t)
	for _, flags := range [][]string{nil, {"--root", dir + "/x", "--runroot", dir + "/xr", "--storage-driver", "vfs"}} {
		args := append(append([]string(nil), flags...), "info", "--format", "json")
		out := testenv.Run(t, env, bin, args...)
		var got stowageInfo
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		want := decodeStore(t, "podman info", testenv.Run(t, env, "podman", append(append([]string(nil), flags...), "info", "--format", "json")...))
		if got.Store != want.Store || got.Source.Kind != "podman" {
			t.Errorf("flags %q: stowage info %+v, podman info %+v", flags, got, want.Store)
		}
	}
	// The policy's [storage] keys are overrides too: podman is pointed at
	// them (it creates the store it was asked about) and they win.
	pol := filepath.Join(dir, "stowage.toml")
	if err := os.WriteFile(pol, []byte("version = 1\n[storage]\ndriver = \"vfs\"\ngraphroot = \""+dir+"/p\"\nrunroot = \""+dir+"/pr\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var fromPolicy stowageInfo
	if err := json.Unmarshal([]byte(testenv.Run(t, env, bin, "--policy", pol, "info", "--format", "json")), &fromPolicy); err != nil {
		t.Fatal(err)
	}
	if fromPolicy.Store.GraphRoot != dir+"/p" || fromPolicy.Store.RunRoot != dir+"/pr" || fromPolicy.Store.GraphDriverName != "vfs" {
		t.Errorf("policy [storage]: %+v", fromPolicy.Store)
	}
	if _, err := os.Stat(filepath.Join(dir, "p", "libpod")); err != nil {
		t.Errorf("podman was not asked with the policy's graphroot: %v", err)
	}

	// Root's own default store (this test's environment names no
	// CONTAINERS_STORAGE_CONF).
	var def stowageInfo
	if err := json.Unmarshal([]byte(testenv.Run(t, nil, bin, "info", "--format", "json")), &def); err != nil {
		t.Fatal(err)
	}
	if want := decodeStore(t, "podman info", testenv.Run(t, nil, "podman", "info", "--format", "json")); def.Store != want.Store {
		t.Errorf("default store: stowage info %+v, podman info %+v", def.Store, want.Store)
	}

	// The table names the source.
	if out := testenv.Run(t, env, bin, "info"); !strings.Contains(out, "source:          podman ") || !strings.Contains(out, dir+"/g") {
		t.Errorf("stowage info:\n%s", out)
	}
}

// TestInfoRootlessMatchesPodman: for a rootless user, stowage opens the
// store the user's podman uses: with a system storage.conf naming root's
// graphroot/runroot (Debian 13's containers-storage package; podman ignores
// them for rootless users, containers/storage applies them), without any
// storage.conf, with rootless_storage_path and with graphroot in
// ~/.config/containers/storage.conf. Each change of storage.conf makes the
// cached answer stale.
func TestInfoRootlessMatchesPodman(t *testing.T) {
	testenv.RequireTool(t, "podman", "unshare", "setpriv", "mount")
	u := testenv.NewRootlessUser(t, "stwg-info")
	bin := u.Install(t, testenv.Stowage(t))
	t.Cleanup(func() { _, _ = u.RunErr(nil, "podman", "system", "reset", "-f") })

	// A private copy of /usr/share/containers with Debian 13's storage.conf,
	// bind-mounted over the real one in a private mount namespace only.
	sys := t.TempDir()
	testenv.Run(t, nil, "cp", "-a", "/usr/share/containers/.", sys+"/")
	if err := os.WriteFile(filepath.Join(sys, "storage.conf"), []byte(`[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
[storage.options.overlay]
mountopt = "nodev"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sys, 0o755); err != nil {
		t.Fatal(err)
	}
	// run runs name args as the user; with systemConf, /usr/share/containers
	// is the private copy. It returns stdout and stderr.
	run := func(systemConf bool, name string, args ...string) (string, string) {
		t.Helper()
		var cmd *exec.Cmd
		if systemConf {
			script := `d=$1; uid=$2; gid=$3; shift 3; mount --bind "$d" /usr/share/containers && exec setpriv --reuid="$uid" --regid="$gid" --init-groups env -i "$@"`
			argv := []string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", sys, strconv.Itoa(u.UID), strconv.Itoa(u.GID)}
			argv = append(argv, u.Env()...)
			argv = append(argv, name)
			argv = append(argv, args...)
			cmd = exec.Command("unshare", argv...)
			cmd.Dir = u.Home
		} else {
			cmd = u.Command(nil, name, args...)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %q: %v\n%s", name, args, err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	check := func(name string, systemConf bool) stowageInfo {
		t.Helper()
		pout, _ := run(systemConf, "podman", "info", "--format", "json")
		want := decodeStore(t, name+": podman info", pout)
		sout, _ := run(systemConf, bin, "info", "--format", "json")
		var got stowageInfo
		if err := json.Unmarshal([]byte(sout), &got); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, sout)
		}
		if got.Store != want.Store || got.Source.Kind != "podman" {
			t.Errorf("%s: stowage info %+v, podman info %+v", name, got.Store, want.Store)
		}
		if !strings.HasPrefix(got.Store.GraphRoot, u.Home) {
			t.Errorf("%s: graphroot %s outside the user's home", name, got.Store.GraphRoot)
		}
		return got
	}
	userConf := filepath.Join(u.Home, ".config", "containers", "storage.conf")
	writeUserConf := func(body string) {
		t.Helper()
		u.Run(t, nil, "mkdir", "-p", filepath.Dir(userConf))
		u.Run(t, nil, "sh", "-c", `printf '%s' "$1" > "$2"`, "sh", body, userConf)
	}

	// Debian 13: the system storage.conf names root's store.
	got := check("system storage.conf", true)
	if got.Store.GraphRoot != filepath.Join(u.Home, ".local/share/containers/storage") {
		t.Errorf("graphroot %s, want podman's rootless default", got.Store.GraphRoot)
	}
	// Opening it (overlay: through the user namespace, with the store
	// handed to the re-executed child) works, and the child does not ask
	// podman again.
	dfOut, dfErr := run(true, bin, "--log-level", "debug", "df", "--format", "json", "--volumes", "no")
	var df struct {
		GraphRoot string `json:"graphroot"`
		Driver    string `json:"driver"`
	}
	if err := json.Unmarshal([]byte(dfOut), &df); err != nil || df.GraphRoot != got.Store.GraphRoot || df.Driver != got.Store.GraphDriverName {
		t.Errorf("df: %v %+v\n%s", err, df, dfErr)
	}
	if got.Store.GraphDriverName != "vfs" && (!strings.Contains(dfErr, "store handed over by the parent process") || strings.Count(dfErr, "store resolved") != 1) {
		t.Errorf("the user-namespace child did not take the parent's store:\n%s", dfErr)
	}

	t.Logf("system storage.conf: %s store at %s", got.Store.GraphDriverName, got.Store.GraphRoot)

	// No storage.conf anywhere.
	check("no storage.conf", false)

	// rootless_storage_path, then graphroot, in the user's storage.conf:
	// each edit invalidates the cached answer.
	writeUserConf("[storage]\ndriver = \"vfs\"\nrootless_storage_path = \"" + u.Home + "/rsp\"\n")
	got = check("rootless_storage_path", false)
	if got.Store.GraphRoot != u.Home+"/rsp" || got.Source.Cached {
		t.Errorf("rootless_storage_path: %+v", got)
	}
	if again := check("rootless_storage_path again", false); !again.Source.Cached {
		t.Errorf("second run not cached: %+v", again)
	}
	writeUserConf("[storage]\ndriver = \"vfs\"\ngraphroot = \"" + u.Home + "/gr\"\nrunroot = \"" + u.RuntimeDir + "/rr\"\n")
	got = check("graphroot", false)
	if got.Store.GraphRoot != u.Home+"/gr" || got.Source.Cached {
		t.Errorf("graphroot: %+v", got)
	}

	// CONTAINERS_STORAGE_CONF names another file.
	alt := filepath.Join(u.Home, "alt.conf")
	u.Run(t, nil, "sh", "-c", `printf '%s' "$1" > "$2"`, "sh", "[storage]\ndriver = \"vfs\"\ngraphroot = \""+u.Home+"/alt\"\nrunroot = \""+u.RuntimeDir+"/altr\"\n", alt)
	extra := []string{"CONTAINERS_STORAGE_CONF=" + alt}
	want := decodeStore(t, "podman info", u.Run(t, extra, "podman", "info", "--format", "json"))
	var altInfo stowageInfo
	if err := json.Unmarshal([]byte(u.Run(t, extra, bin, "info", "--format", "json")), &altInfo); err != nil {
		t.Fatal(err)
	}
	// (podman 4.3.1 keeps the graphroot its database recorded; whatever
	// podman does, stowage follows.)
	t.Logf("CONTAINERS_STORAGE_CONF: podman uses %+v", want.Store)
	if altInfo.Store != want.Store || altInfo.Source.Cached {
		t.Errorf("CONTAINERS_STORAGE_CONF: stowage info %+v, podman info %+v", altInfo, want.Store)
	}
}
