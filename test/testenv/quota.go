package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// QuotaFS is a loop-mounted ext4 filesystem with user quotas enforced
// (`mkfs.ext4 -O quota`, mounted with usrquota); it is unmounted when the
// test ends.
type QuotaFS struct {
	Dir   string // mount point
	Image string // backing file
}

// NewQuotaFS makes and mounts a sizeMiB ext4 filesystem with user quotas.
// It needs root, e2fsprogs and quota tools. A kernel built without quota
// support (CONFIG_QUOTA, CONFIG_QFMT_V2) cannot enforce quotas at all: the
// test is skipped with that reason, since no tool install can fix it.
func NewQuotaFS(t testing.TB, sizeMiB int) *QuotaFS {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "mkfs.ext4", "mount", "umount", "setquota", "quota", "findmnt", "truncate")
	dir := t.TempDir()
	q := &QuotaFS{Dir: filepath.Join(dir, "mnt"), Image: filepath.Join(dir, "fs.img")}
	if err := os.Mkdir(q.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(q.Image)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	Run(t, nil, "mkfs.ext4", "-q", "-F", "-O", "quota", "-E", "quotatype=usrquota", q.Image)
	if _, err := RunErr(nil, "mount", "-o", "loop,usrquota", q.Image, q.Dir); err != nil {
		// Tell a kernel without quota support from a broken setup: a plain
		// ext4 (no quota feature) mounts there.
		plain := filepath.Join(dir, "plain.img")
		Run(t, nil, "truncate", "-s", "8M", plain)
		Run(t, nil, "mkfs.ext4", "-q", "-F", plain)
		if _, err2 := RunErr(nil, "mount", "-o", "loop", plain, q.Dir); err2 == nil {
			_, _ = RunErr(nil, "umount", q.Dir)
			t.Skipf("the kernel cannot enforce disk quotas (built without CONFIG_QUOTA/CONFIG_QFMT_V2): %v", err)
		}
		t.Fatalf("mounting %s with usrquota: %v", q.Image, err)
	}
	t.Cleanup(func() {
		// Lazy: a rootless podman pause process may still hold a cwd there.
		if _, err := RunErr(nil, "umount", q.Dir); err != nil {
			_, _ = RunErr(nil, "umount", "-l", q.Dir)
		}
	})
	return q
}

// SetUserQuota sets a user's block soft and hard limits in bytes (rounded
// down to KiB, the unit setquota takes).
func (q *QuotaFS) SetUserQuota(t testing.TB, user string, softBytes, hardBytes int64) {
	t.Helper()
	Run(t, nil, "setquota", "-u", user, fmt.Sprint(softBytes>>10), fmt.Sprint(hardBytes>>10), "0", "0", q.Dir)
}

// UsedBytes returns a user's block usage on the filesystem as the quota
// tools report it (`quota -v -w -u USER`, KiB blocks, this mount's line).
func (q *QuotaFS) UsedBytes(t testing.TB, user string) int64 {
	t.Helper()
	dev := strings.TrimSpace(Run(t, nil, "findmnt", "-n", "-o", "SOURCE", q.Dir))
	out := Run(t, nil, "quota", "-v", "-w", "-u", user)
	// Filesystem  blocks  quota  limit  grace  files ...; one line per
	// filesystem, starting with its device; "blocks" has a '*' when over.
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == dev {
			var kib int64
			if _, err := fmt.Sscan(strings.TrimSuffix(f[1], "*"), &kib); err == nil {
				return kib << 10
			}
		}
	}
	t.Fatalf("cannot parse quota output:\n%s", out)
	return 0
}
