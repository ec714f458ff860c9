package daemon

import (
	"fmt"
	"regexp"
	"testing"
)

// TestReleaseStartupMemory drops the clean executable pages of this test
// binary and keeps running code and reading tables from them.
func TestReleaseStartupMemory(t *testing.T) {
	kib, err := releaseStartupMemory()
	if err != nil {
		t.Fatal(err)
	}
	if kib <= 0 {
		t.Fatalf("released %d KiB: no clean executable mapping found", kib)
	}
	re := regexp.MustCompile(`^(\d+)-([a-z]+)$`)
	if m := re.FindStringSubmatch(fmt.Sprintf("%d-%s", 42, "prune")); len(m) != 3 || m[2] != "prune" {
		t.Fatalf("code after release misbehaves: %v", m)
	}
	// Twice is harmless.
	if _, err := releaseStartupMemory(); err != nil {
		t.Fatal(err)
	}
}
