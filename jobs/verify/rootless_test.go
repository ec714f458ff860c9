package verify_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stowage/stowage/jobs/verify"
	"github.com/stowage/stowage/jobs/verify/integrity"
	"github.com/stowage/stowage/test/testenv"
)

// TestRootless runs verify as a real non-root user on its vfs store whose
// layer holds a 0600 file owned by a subordinate uid: readable only inside
// the user namespace, which `stowage run verify --integrity` must enter.
func TestRootless(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "podman", "newuidmap")
	u := testenv.NewRootlessUser(t, "stwg-verify")
	bin := u.Install(t, testenv.Stowage(t))
	flags := []string{"--root", filepath.Join(u.Home, "s", "root"), "--runroot", filepath.Join(u.Home, "s", "run"), "--storage-driver", "vfs"}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("secret owned by uid 1000 in the image")
	if err := tw.WriteHeader(&tar.Header{Name: "secret", Mode: 0o600, Uid: 1000, Gid: 1000, Size: int64(len(body)), ModTime: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(u.Home, "img.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	u.Run(t, nil, "podman", append(flags, "import", "-q", tarPath, "localhost/rootless:1")...)

	pol := filepath.Join(u.Home, "policy.json")
	testenv.TrustPolicy{Docker: map[string][]testenv.Requirement{"localhost/rootless": {testenv.InsecureAcceptAnything()}}}.Write(t, pol)
	toml := filepath.Join(u.Home, "stowage.toml")
	if err := os.WriteFile(toml, []byte("version = 1\n[verify]\npolicy_json = \""+pol+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := u.Run(t, nil, bin, append(flags, "--policy", toml, "--state-dir", filepath.Join(u.Home, "state"), "run", "verify", "--integrity", "--format", "json")...)
	var rep verify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rep.Results) != 1 || rep.Results[0].Status != verify.StatusAccepted || rep.Results[0].Reason != verify.RuleInsecureAcceptAnything {
		t.Errorf("results = %+v", rep.Results)
	}
	if len(rep.Layers) != 1 || rep.Layers[0].Status != integrity.StatusOK {
		t.Errorf("layers = %+v", rep.Layers)
	}
}
