package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// StartDaemon starts the stowage binary bin with args (global flags, then
// "daemon --socket SOCK"; env is added to the environment) and waits until
// `stowage --user status --socket sock` answers. The daemon is killed at the
// test's end and its stderr logged.
func StartDaemon(t testing.TB, bin, sock string, env []string, args ...string) {
	t.Helper()
	d := exec.Command(bin, args...)
	d.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	d.Stderr = &stderr
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.Process.Kill()
		_ = d.Wait()
		t.Logf("daemon stderr:\n%s", stderr.String())
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := RunErr(nil, bin, "--user", "status", "--socket", sock); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not up")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
