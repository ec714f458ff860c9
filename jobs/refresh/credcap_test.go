package refresh

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCredHelperOutputCap: a helper that floods its standard output is
// drained, not buffered: the lookup fails with a short error.
func TestCredHelperOutputCap(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\nread -r server\nhead -c 3000000 /dev/zero | tr '\\0' x\n"
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-stwgflood"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := credentialsFromHelper(ctx, "stwgflood", "registry.example")
	if err == nil || !strings.Contains(err.Error(), "answer longer than") {
		t.Fatalf("flooding helper: %v", err)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error is %d bytes long", len(err.Error()))
	}
}
