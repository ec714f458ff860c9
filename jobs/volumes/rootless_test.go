package volumes

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/test/testenv"
)

// TestRootlessUserSocket: a non-root user's own podman socket at
// $XDG_RUNTIME_DIR/podman/podman.sock is found without configuration, and
// only that user's unused anonymous volume goes.
func TestRootlessUserSocket(t *testing.T) {
	u := testenv.NewRootlessUser(t, "stwg-volumes")
	writeAs := func(name, content string) string {
		t.Helper()
		path := filepath.Join(u.Home, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
		return path
	}
	conf := writeAs("containers.conf", "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \""+filepath.Join(u.Home, "events.log")+"\"\n")
	// The per-user storage.conf: podman 4.3 ignores CONTAINERS_STORAGE_CONF's
	// graphroot for rootless users, containers/storage 1.64 does not.
	cfgDir := filepath.Join(u.Home, ".config", "containers")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(cfgDir), cfgDir} {
		if err := os.Chown(d, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	writeAs(".config/containers/storage.conf", "[storage]\ndriver = \"vfs\"\ngraphroot = \""+filepath.Join(u.Home, "storage")+"\"\nrunroot = \""+filepath.Join(u.RuntimeDir, "containers")+"\"\n")
	regconf := writeAs("registries.conf", "unqualified-search-registries = []\n")
	extra := []string{"CONTAINERS_CONF=" + conf, "CONTAINERS_REGISTRIES_CONF=" + regconf}
	tarPath := writeAs("rootfs.tar", string(testenv.TarBytes(t, map[string]string{"/hello": "hi"})))
	podman := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(u.Run(t, extra, "podman", args...))
	}
	podman("import", "-q", tarPath, img)
	podman("create", "--name", "gone", "-v", "/data", img, "/hello")
	anon := podman("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "gone")
	podman("rm", "gone")
	podman("create", "--name", "holder", "-v", "/data", img, "/hello")
	podman("volume", "create", "named")

	// The user's own API service on podman's default rootless socket.
	sockDir := filepath.Join(u.RuntimeDir, "podman")
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, u.UID, u.GID); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(sockDir, "podman.sock")
	svc := u.Command(extra, "podman", "system", "service", "--time=0", "unix://"+sock)
	svc.SysProcAttr.Setpgid = true
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-svc.Process.Pid, syscall.SIGKILL); _ = svc.Wait() })
	c := podmanapi.New(sock, 5*time.Second)
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Ping(context.Background()); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the user's podman service does not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	bin := u.Install(t, testenv.Stowage(t))
	pol := writeAs("stowage.toml", "version = 1\n[volumes]\nmin_age = \"0s\"\n")
	stowage := func() Report {
		t.Helper()
		run := u.Command(extra, bin, "--policy", pol, "--log-level", "debug", "run", "volumes", "--format", "json")
		var stdout, stderr strings.Builder
		run.Stdout, run.Stderr = &stdout, &stderr
		if err := run.Run(); err != nil {
			t.Fatalf("stowage run volumes as %s: %v\n%s", u.Name, err, stderr.String())
		}
		t.Logf("stowage log:\n%s", stderr.String())
		return decodeReport(t, stdout.String())
	}
	r := stowage()
	if r.PodmanStarted || r.PodmanSocket != sock {
		t.Errorf("used %s (started=%v), want the user's socket %s", r.PodmanSocket, r.PodmanStarted, sock)
	}
	if !slices.Equal(names(r.Removed), []string{anon}) {
		t.Errorf("removed %v, want [%s]", names(r.Removed), anon)
	}
	if got := reasons(r.Kept); got["named"] != ReasonNamed || len(got) != 2 {
		t.Errorf("kept %v, want named and the holder's volume", got)
	}
	left := strings.Fields(podman("volume", "ls", "-q"))
	if len(left) != 2 || slices.Contains(left, anon) || !slices.Contains(left, "named") {
		t.Errorf("the user's volumes after the run: %v", left)
	}

	// Without the user's service, stowage starts a private one as the user.
	_ = syscall.Kill(-svc.Process.Pid, syscall.SIGTERM)
	_ = svc.Wait()
	podman("create", "--name", "gone2", "-v", "/data", img, "/hello")
	anon2 := podman("inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "gone2")
	podman("rm", "gone2")
	r = stowage()
	if !r.PodmanStarted || !slices.Equal(names(r.Removed), []string{anon2}) {
		t.Errorf("without a user socket: started=%v removed %v, want a private service removing %s", r.PodmanStarted, names(r.Removed), anon2)
	}
}
