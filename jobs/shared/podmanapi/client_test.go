package podmanapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/shared/podmanapi"
	"github.com/stowage/stowage/test/testenv"
)

// setup gives a store with one image, a real podman API service over it and
// a client.
func setup(t *testing.T) (*testenv.Podman, *podmanapi.Client) {
	t.Helper()
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.IsolateEngine(t)
	p.Import(t, "localhost/stwg-volumes/img:1", map[string]string{"/hello": "hi"})
	svc := p.StartPodmanService(t)
	c := podmanapi.New(svc.Socket, 30*time.Second)
	t.Cleanup(c.Close)
	return p, c
}

func TestClientVolumes(t *testing.T) {
	p, c := setup(t)
	ctx := context.Background()

	v, err := c.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Run(t, "version", "--format", "{{.Server.Version}}")
	if v.Version != want {
		t.Errorf("Version = %q, want %q (podman version)", v.Version, want)
	}
	if pv, err := c.Ping(ctx); err != nil || pv != want {
		t.Errorf("Ping = %q, %v; want %q", pv, err, want)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Store.GraphRoot != p.Root || info.Store.GraphDriverName != "vfs" {
		t.Errorf("Info store = %+v, want graphroot %s, vfs", info.Store, p.Root)
	}

	p.Run(t, "volume", "create", "--label", "tier=db", "named")
	p.Run(t, "create", "--name", "user", "-v", "used:/data", "localhost/stwg-volumes/img:1", "/hello")
	p.Run(t, "create", "--name", "anon", "-v", "/data", "localhost/stwg-volumes/img:1", "/hello")
	anon := p.Run(t, "inspect", "--format", "{{range .Mounts}}{{.Name}}{{end}}", "anon")
	p.Run(t, "rm", "anon") // without -v: the anonymous volume stays, dangling

	all, err := c.Volumes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]podmanapi.Volume{}
	for _, v := range all {
		byName[v.Name] = v
	}
	if len(all) != 3 || !byName[anon].Anonymous || byName["named"].Anonymous || byName["used"].Anonymous {
		t.Fatalf("Volumes = %+v; want named, used, and %s anonymous", all, anon)
	}
	if byName["named"].Labels["tier"] != "db" || time.Since(byName["named"].CreatedAt) > time.Hour {
		t.Errorf("named volume = %+v, want label tier=db and a recent CreatedAt", byName["named"])
	}
	dangling, err := c.Volumes(ctx, map[string][]string{"dangling": {"true"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range dangling {
		names = append(names, v.Name)
	}
	if strings.Join(names, ",") != strings.Join([]string{anon, "named"}, ",") && strings.Join(names, ",") != "named,"+anon {
		t.Errorf("dangling = %v, want %s and named", names, anon)
	}

	// Sizes: write into the anonymous volume and read them back from df.
	if err := os.WriteFile(filepath.Join(byName[anon].Mountpoint, "blob"), make([]byte, 200_000), 0o644); err != nil {
		t.Fatal(err)
	}
	df, err := c.SystemDF(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var size int64 = -1
	for _, u := range df.Volumes {
		if u.VolumeName == anon {
			size = u.Size
		}
		if u.VolumeName == "used" && u.Links != 1 {
			t.Errorf("df links of used = %d, want 1", u.Links)
		}
	}
	if size < 200_000 {
		t.Errorf("df size of %s = %d, want >= 200000", anon, size)
	}

	if _, err := c.InspectVolume(ctx, "named"); err != nil {
		t.Errorf("InspectVolume(named): %v", err)
	}
	if _, err := c.InspectVolume(ctx, "nope"); !errors.Is(err, podmanapi.ErrNotFound) {
		t.Errorf("InspectVolume(nope) = %v, want ErrNotFound", err)
	}
	if err := c.RemoveVolume(ctx, "used"); !errors.Is(err, podmanapi.ErrVolumeInUse) {
		t.Errorf("RemoveVolume(used) = %v, want ErrVolumeInUse", err)
	}
	if err := c.RemoveVolume(ctx, "nope"); !errors.Is(err, podmanapi.ErrNotFound) {
		t.Errorf("RemoveVolume(nope) = %v, want ErrNotFound", err)
	}
	if err := c.RemoveVolume(ctx, "named"); err != nil {
		t.Errorf("RemoveVolume(named): %v", err)
	}
	if out := p.Run(t, "volume", "ls", "-q"); strings.Contains(out, "named") || !strings.Contains(out, "used") {
		t.Errorf("after removal podman volume ls = %q", out)
	}
}

func TestClientEvents(t *testing.T) {
	p, c := setup(t)
	ctx := context.Background()
	p.Run(t, "create", "--name", "early", "localhost/stwg-volumes/img:1", "/hello")
	time.Sleep(1100 * time.Millisecond) // since has one-second granularity
	since := time.Now()
	time.Sleep(1100 * time.Millisecond)
	id := p.Run(t, "create", "--name", "late", "localhost/stwg-volumes/img:1", "/hello")
	p.Run(t, "rm", "late")

	all, err := c.Events(ctx, podmanapi.EventsOptions{Filters: podmanapi.ContainerUseFilters})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("Events = %+v, want the two create events", all)
	}
	for _, e := range all {
		if e.Type != "container" || e.Action != "create" || e.Image != "localhost/stwg-volumes/img:1" || e.Time.IsZero() {
			t.Errorf("event = %+v", e)
		}
	}
	recent, err := c.Events(ctx, podmanapi.EventsOptions{Since: since, Filters: podmanapi.ContainerUseFilters})
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 1 || recent[0].ID != id || recent[0].Name != "late" || recent[0].Time.Before(since) {
		t.Errorf("Events since %s = %+v, want only late (%s)", since, recent, id)
	}
	// Without filters the removal shows up too.
	every, err := c.Events(ctx, podmanapi.EventsOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range every {
		actions = append(actions, e.Action)
	}
	if !strings.Contains(strings.Join(actions, ","), "remove") {
		t.Errorf("unfiltered events since %s: actions %v, want a remove", since, actions)
	}
}

func TestConnectSocket(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.IsolateEngine(t)
	svc := p.StartPodmanService(t)
	conn, err := podmanapi.Connect(context.Background(), podmanapi.ConnectOptions{
		Sockets:   []string{filepath.Join(t.TempDir(), "absent.sock"), svc.Socket},
		GraphRoot: p.Root,
		Podman:    "/nonexistent/podman", // must not be needed
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.Started || conn.Socket() != svc.Socket {
		t.Errorf("Connect: started=%v socket=%s, want the running service %s", conn.Started, conn.Socket(), svc.Socket)
	}
}

func TestConnectPrivate(t *testing.T) {
	testenv.RequireRoot(t)
	p := testenv.NewPodman(t, "vfs")
	p.IsolateEngine(t)
	other := testenv.NewPodman(t, "vfs")
	other.IsolateEngine(t)
	otherSvc := other.StartPodmanService(t) // answers, but serves another store
	p.Run(t, "volume", "create", "mine")

	conn, err := podmanapi.Connect(context.Background(), podmanapi.ConnectOptions{
		Sockets:    []string{otherSvc.Socket},
		GraphRoot:  p.Root,
		PodmanArgs: p.Flags(),
		Env:        p.Env,
		IdleTime:   30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !conn.Started || conn.Socket() == otherSvc.Socket {
		t.Fatalf("Connect used %s (started=%v), want a private service", conn.Socket(), conn.Started)
	}
	vs, err := conn.Volumes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Name != "mine" {
		t.Errorf("private service lists %+v, want the store's volume mine", vs)
	}
	sock := conn.Socket()
	pid := conn.ServicePID()
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(sock)); !os.IsNotExist(err) {
		t.Errorf("private socket dir still there after Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("podman service pid %d still alive after Close", pid)
	}
}

func TestConnectNoPodman(t *testing.T) {
	dir := t.TempDir()
	_, err := podmanapi.Connect(context.Background(), podmanapi.ConnectOptions{
		Sockets: []string{filepath.Join(dir, "podman.sock")},
		Podman:  filepath.Join(dir, "podman"), // no such binary
	})
	if !errors.Is(err, podmanapi.ErrNoPodman) {
		t.Fatalf("Connect = %v, want ErrNoPodman", err)
	}
	if !strings.Contains(err.Error(), "podman.sock (absent)") {
		t.Errorf("error %q does not say which socket was tried", err)
	}
	_, err = podmanapi.Connect(context.Background(), podmanapi.ConnectOptions{NoStart: true})
	if !errors.Is(err, podmanapi.ErrNoPodman) {
		t.Fatalf("Connect(NoStart) = %v, want ErrNoPodman", err)
	}
}
