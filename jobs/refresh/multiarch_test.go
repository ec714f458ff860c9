package refresh

import (
	"fmt"
	"testing"

	"github.com/stowage/stowage/test/testenv"
)

// pushList pushes a manifest list of two local images (amd64, arm64) to dest.
func (w *world) pushList(name, amd, arm, dest string) string {
	w.t.Helper()
	w.builder.Run(w.t, "manifest", "create", name)
	w.builder.Run(w.t, "manifest", "add", "--os", "linux", "--arch", "amd64", name, "containers-storage:"+amd)
	w.builder.Run(w.t, "manifest", "add", "--os", "linux", "--arch", "arm64", "--variant", "v8", name, "containers-storage:"+arm)
	return w.pushImage(name, dest, "--all")
}

func (w *world) image(tag string) string {
	w.t.Helper()
	w.n++
	local := fmt.Sprintf("localhost/%s:latest", tag)
	w.builder.Import(w.t, local, map[string]string{"content": fmt.Sprintf("%s %d", tag, w.n)})
	return local
}

func TestRefreshMultiArch(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	ref := w.reg.Addr + "/multi/app:1"
	amd1, arm1 := w.image("amd1"), w.image("arm1")
	list1 := w.pushList("localhost/list1", amd1, arm1, ref)
	w.pull(ref, "--arch", "amd64")

	rep := w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if rep.GetRequests != 0 {
		t.Errorf("unchanged list: %d GETs", rep.GetRequests)
	}

	// Only the arm64 image changes: the list digest moves, ours does not.
	arm2 := w.image("arm2")
	list2 := w.pushList("localhost/list2", amd1, arm2, ref)
	if list2 == list1 {
		t.Fatal("the second list has the same digest")
	}
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if r := byRef(rep)[ref]; rep.GetRequests != 1 || r.ListDigest != list2 {
		t.Errorf("other platform changed: %d GETs (want 1), result %+v", rep.GetRequests, r)
	}
	// The list → instance choice is remembered: no GET the next time.
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if rep.GetRequests != 0 {
		t.Errorf("known list: %d GETs, want 0", rep.GetRequests)
	}

	// Our platform changes: drift, to the amd64 instance's digest.
	amd3 := w.image("amd3")
	list3 := w.pushList("localhost/list3", amd3, arm2, ref)
	amd3Digest := testenvRun(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	rep = w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusDrifted})
	r := byRef(rep)[ref]
	if r.ListDigest != list3 || r.RemoteDigest == list3 || r.RemoteDigest == "" || !r.New {
		t.Errorf("our platform changed: %+v", r)
	}
	if !containsDigestFor(amd3Digest, r.RemoteDigest, "amd64") {
		t.Errorf("remote digest %s is not the amd64 instance of %s", r.RemoteDigest, amd3Digest)
	}
}

func TestRefreshMirror(t *testing.T) {
	w := newWorld(t, testenv.RegistryOptions{})
	// The registry is unreachable; its mirror (our registry) serves it.
	w.setRegistries(fmt.Sprintf("[[registry]]\nlocation = \"primary.invalid\"\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", w.reg.Addr))
	w.push("app/m:1")
	ref := "primary.invalid/app/m:1"
	w.pull(ref)

	rep := w.run(defaultRefresh(), nil, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})
	if r := byRef(rep)[ref]; r.Registry != w.reg.Addr {
		t.Errorf("answered by %q, want the mirror %s", r.Registry, w.reg.Addr)
	}
	if _, ok := rep.Registries["primary.invalid"]; ok {
		t.Errorf("the registry was contacted although its mirror answered: %+v", rep.Registries)
	}
	d2 := w.push("app/m:1")
	rep = w.run(defaultRefresh(), nil, false)
	if r := byRef(rep)[ref]; r.Status != StatusDrifted || r.RemoteDigest != d2 {
		t.Errorf("mirror drift: %+v (want drifted to %s)", r, d2)
	}
}
