package refresh

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// TestRootless: a non-root user's own overlay store holds images its
// rootless podman pulled from an insecure registry on 127.0.0.1. Run as the
// user with no wrapper, `stowage run refresh` enters the user namespace
// itself, reports current then drifted, keeps the history in the user's
// own state dir, and in pull mode pulls the new image into the user's store.
func TestRootless(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	u := testenv.NewRootlessUser(t, "stwg-refresh")
	bin := u.Install(t, testenv.Stowage(t))
	a, b := w.reg.Addr+"/rl/a:1", w.reg.Addr+"/rl/b:1"
	w.push("rl/a:1")
	w.push("rl/b:1")

	// The user's own configuration, as rootless podman reads it: overlay
	// under the home directory, the registry marked insecure.
	u.Run(t, nil, "sh", "-ec", fmt.Sprintf(`
mkdir -p ~/.config/containers ~/.config/stowage
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' > ~/.config/containers/storage.conf
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' > ~/.config/containers/containers.conf
printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' > ~/.config/containers/registries.conf
`, filepath.Join(u.Home, ".local/share/containers/storage"), filepath.Join(u.RuntimeDir, "containers"), w.reg.Addr))
	t.Cleanup(func() { _, _ = u.RunErr(nil, "podman", "system", "reset", "-f") })
	podman := func(args ...string) string { return strings.TrimSpace(u.Run(t, nil, "podman", args...)) }
	podman("pull", "-q", a)
	podman("pull", "-q", b)
	if d := podman("info", "--format", "{{.Store.GraphDriverName}}"); d != "overlay" {
		t.Fatalf("rootless podman uses %q, want overlay", d)
	}
	bID := podman("image", "inspect", "--format", "{{.Id}}", b)

	run := func(args ...string) *Report {
		t.Helper()
		out := u.Run(t, nil, bin, append([]string{"run", "refresh", "--format", "json"}, args...)...)
		var r Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("decoding %s: %v", out, err)
		}
		return &r
	}
	rep := run()
	expect(t, rep, map[string]Status{a: StatusCurrent, b: StatusCurrent})
	if len(rep.Results) != 2 || rep.HeadRequests != 2 || rep.GetRequests != 0 {
		t.Errorf("first run: %d results, %d HEAD, %d GET", len(rep.Results), rep.HeadRequests, rep.GetRequests)
	}

	// The history is the user's, in the user's XDG state dir.
	stateDB := filepath.Join(u.Home, ".local/state/stowage/state.db")
	for _, p := range []string{filepath.Dir(stateDB), stateDB} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != u.UID || int(st.Gid) != u.GID {
			t.Errorf("%s owned by %v, want %d:%d", p, fi.Sys(), u.UID, u.GID)
		}
	}

	db2 := w.push("rl/b:1")
	rep = run()
	expect(t, rep, map[string]Status{a: StatusCurrent, b: StatusDrifted})
	if rb := byRef(rep)[b]; rb.RemoteDigest != db2 || !rb.New || rb.ImageID != bID {
		t.Errorf("b: %+v, want drifted to %s, new, local %s", rb, db2, bID)
	}
	var recs []Record
	out := u.Run(t, nil, bin, "history", "--format", "json", b)
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 1 || len(recs[0].Seen) != 2 || recs[0].Seen[1].Digest != db2 || !recs[0].Seen[1].Drift {
		t.Errorf("history of b: %s (%v)", out, err)
	}
	// Seen before: no longer new.
	if rb := byRef(run())[b]; rb.Status != StatusDrifted || rb.New {
		t.Errorf("second sighting: %+v", rb)
	}

	// Pull mode: the new content lands in the user's store, the old image stays.
	pol := filepath.Join(u.Home, ".config/stowage/refresh-pull.toml")
	u.Run(t, nil, "sh", "-ec", `printf 'version = 1\n[refresh]\nmode = "pull"\n' > "$1"`, "sh", pol)
	rep = run("--policy", pol)
	rb := byRef(rep)[b]
	if rb.Status != StatusDrifted || rb.PulledImageID == "" || rb.PulledImageID == bID || rb.Error != "" {
		t.Fatalf("pull mode: %+v", rb)
	}
	if got := podman("image", "inspect", "--format", "{{.Id}}", b); got != rb.PulledImageID {
		t.Errorf("rootless podman: %s is %s, want the pulled %s", b, got, rb.PulledImageID)
	}
	if got := podman("image", "inspect", "--format", "{{.Digest}}", b); got != db2 {
		t.Errorf("pulled image digest %s, want %s", got, db2)
	}
	// Both images are whole and readable by the user's podman: the pull
	// wrote its layers inside the user namespace, as podman would.
	content := func(image string) string {
		t.Helper()
		name := "stwg-rl-" + image[:12]
		podman("create", "--name", name, image, "/none")
		dst := filepath.Join(u.Home, name+".txt")
		podman("cp", name+":/content", dst)
		podman("rm", name)
		data, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	oldContent, newContent := content(bID), content(rb.PulledImageID)
	if !strings.Contains(oldContent, "/rl/b:1") || !strings.Contains(newContent, "/rl/b:1") || oldContent == newContent {
		t.Errorf("old image has %q, pulled image %q", oldContent, newContent)
	}
	if rep := run(); byRef(rep)[b].Status != StatusCurrent {
		t.Errorf("after the pull b is %+v", byRef(rep)[b])
	}
	if fi, err := os.Stat(stateDB); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.UID {
			t.Errorf("after pull mode %s owned by uid %d", stateDB, st.Uid)
		}
	}
}
