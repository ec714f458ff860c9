package daemon

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ReleaseStartupMemory is releaseStartupMemory for other long-lived
// processes of this binary (the session agent).
func ReleaseStartupMemory() (int, error) { return releaseStartupMemory() }

// releaseStartupMemory returns what only start-up needed: the heap garbage
// of package initialisation, and the pages of this executable that the
// initialisation of ~1,000 linked packages (most of them for the workers)
// touched. Only mappings of the executable that are not writable and hold
// no modified page are dropped: they are clean page cache, refaulted on
// demand, so nothing is lost (the kernel would evict them the same way under
// memory pressure). It returns the resident KiB released.
func releaseStartupMemory() (int, error) {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	// A freshly installed binary may still have dirty page cache, which
	// smaps reports as dirty (and which is then skipped): write it back.
	if f, err := os.Open("/proc/self/exe"); err == nil {
		_ = unix.Fdatasync(int(f.Fd()))
		f.Close()
	}
	maps, err := cleanExecutableMappings(exe)
	if err != nil {
		return 0, err
	}
	freed := 0
	for _, m := range maps {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return freed, fmt.Errorf("madvise: %w", errno)
		}
		freed += m.rssKiB
	}
	return freed, nil
}

type mapping struct {
	start, end uintptr
	rssKiB     int
}

// cleanExecutableMappings lists exe's read-only mappings with no anonymous
// (copied-on-write) and no dirty pages, from /proc/self/smaps.
func cleanExecutableMappings(exe string) ([]mapping, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	var out []mapping
	var cur *mapping
	var dirty bool
	flush := func() {
		if cur != nil && !dirty && cur.end > cur.start {
			out = append(out, *cur)
		}
		cur, dirty = nil, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			flush()
			if len(f) < 6 || f[5] != exe || strings.ContainsAny(f[1], "w") {
				continue
			}
			lo, hi, _ := strings.Cut(f[0], "-")
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			cur = &mapping{start: uintptr(s), end: uintptr(e)}
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rssKiB = n
		case "Anonymous:", "Private_Dirty:", "Shared_Dirty:", "Swap:":
			if n != 0 {
				dirty = true
			}
		}
	}
	flush()
	return out, sc.Err()
}
