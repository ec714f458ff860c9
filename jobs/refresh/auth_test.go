package refresh

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"

	"github.com/stowage/stowage/test/testenv"
)

func TestRefreshAuthTLS(t *testing.T) {
	certs := testenv.NewTLS(t)
	w := newWorld(t, testenv.RegistryOptions{
		Htpasswd: testenv.Htpasswd(t, "stwg-refresh", "s3cret"),
		CertFile: certs.CertFile, KeyFile: certs.KeyFile,
	})
	// TLS is verified: no insecure entry for this registry.
	w.setRegistries("")
	certsD := certs.CertsD(t, w.reg.Addr)
	ref := w.reg.Addr + "/private/app:1"
	w.push("private/app:1", "--creds", "stwg-refresh:s3cret")
	w.pull(ref, "--creds", "stwg-refresh:s3cret")

	good := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-refresh", "s3cret"}})
	bad := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-refresh", "wrong"}})

	rep := w.run(defaultRefresh(), &types.SystemContext{DockerPerHostCertDirPath: certsD, AuthFilePath: good}, false)
	expect(t, rep, map[string]Status{ref: StatusCurrent})

	rep = w.run(defaultRefresh(), &types.SystemContext{DockerPerHostCertDirPath: certsD, AuthFilePath: bad}, false)
	expect(t, rep, map[string]Status{ref: StatusUnauthorized})

	// Without the CA in certs.d the certificate is not trusted.
	rep = w.run(defaultRefresh(), &types.SystemContext{DockerPerHostCertDirPath: t.TempDir(), AuthFilePath: good}, false)
	expect(t, rep, map[string]Status{ref: StatusError})
	if r := byRef(rep)[ref]; !strings.Contains(r.Error, "certificate") {
		t.Errorf("untrusted CA: error %q does not mention the certificate", r.Error)
	}

	// The CLI honours REGISTRY_AUTH_FILE (podman's convention) and --cert-dir.
	stateDir := filepath.Join(t.TempDir(), "state")
	env := append(append([]string{}, w.host.Env...), "REGISTRY_AUTH_FILE="+good)
	bin := testenv.Stowage(t)
	out := testenv.Run(t, env, bin, append(w.host.Flags(), "--state-dir", stateDir,
		"run", "refresh", "--format", "json", "--cert-dir", filepath.Join(certsD, w.reg.Addr))...)
	var cli Report
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	expect(t, &cli, map[string]Status{ref: StatusCurrent})
	if cli.Job != "refresh" || cli.Registries[w.reg.Addr].Head != 1 || cli.Summary == "" {
		t.Errorf("CLI report: job %q registries %+v summary %q", cli.Job, cli.Registries, cli.Summary)
	}
	env[len(env)-1] = "REGISTRY_AUTH_FILE=" + bad
	// Every reference unauthorized: the report is printed, the run failed.
	out, err := testenv.RunErr(env, bin, append(w.host.Flags(), "--state-dir", stateDir,
		"run", "refresh", "--format", "json", "--cert-dir", filepath.Join(certsD, w.reg.Addr))...)
	if err == nil || !strings.Contains(err.Error(), "no reference could be checked") {
		t.Errorf("all unauthorized: %v, want exit 1", err)
	}
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatal(err)
	}
	expect(t, &cli, map[string]Status{ref: StatusUnauthorized})

	out = testenv.Run(t, env, bin, "--state-dir", stateDir, "history", "--format", "json", ref)
	var recs []Record
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 1 || recs[0].Reference != ref || len(recs[0].Seen) != 1 {
		t.Errorf("history: %s (%v)", out, err)
	}
}

func TestRefreshBearerToken(t *testing.T) {
	testenv.RequireRoot(t)
	ts := testenv.StartTokenServer(t, "stwg-refresh", "tok3n")
	w := newWorldWith(t, testenv.StartTokenRegistry(t, ts))
	creds := []string{"--creds", "stwg-refresh:tok3n"}
	refs := []string{w.reg.Addr + "/one/app:1", w.reg.Addr + "/one/app:2", w.reg.Addr + "/two/app:1"}
	for _, r := range refs {
		w.pushTo(r, creds...)
		w.pull(r, creds...)
	}
	good := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-refresh", "tok3n"}})
	before := len(ts.Scopes())
	rep := w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: good}, false)
	expect(t, rep, map[string]Status{refs[0]: StatusCurrent, refs[1]: StatusCurrent, refs[2]: StatusCurrent})
	// One token per repository scope, reused for every tag in it.
	issued := map[string]int{}
	for _, s := range ts.Scopes()[before:] {
		issued[s]++
	}
	if len(issued) != 2 || issued["repository:one/app:pull"] != 1 || issued["repository:two/app:pull"] != 1 {
		t.Errorf("tokens issued during the run: %v", issued)
	}
	if c := rep.Registries[w.reg.Addr]; c.Token != 2 || c.Head != 3 {
		t.Errorf("counters: %+v", c)
	}

	bad := testenv.AuthJSON(t, map[string][2]string{w.reg.Addr: {"stwg-refresh", "nope"}})
	rep = w.run(defaultRefresh(), &types.SystemContext{AuthFilePath: bad}, false)
	expect(t, rep, map[string]Status{refs[0]: StatusUnauthorized, refs[2]: StatusUnauthorized})
}
