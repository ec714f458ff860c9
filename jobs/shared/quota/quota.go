// Package quota reads a user's disk quota (ext4/xfs user quota) on the
// filesystem holding a path, with quotactl_fd(2): no device lookup needed,
// and it works for an unprivileged user reading their own quota. The
// caller reads it as the real uid, outside the rootless user namespace
// (kernels have refused the query from inside it with EPERM), and hands
// the Reading to the re-executed process.
package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoQuota means the filesystem enforces no user quota for this user
// (quotas off, not supported by the kernel or filesystem, or no limits set).
var ErrNoQuota = errors.New("quota: no user quota")

// Usage is one user's block quota.
type Usage struct {
	SoftLimitBytes int64 // 0 = none
	HardLimitBytes int64 // 0 = none
	UsedBytes      int64
}

// quotactl commands (linux/quota.h).
const (
	qGetQuota = 0x800007
	usrQuota  = 0
	// qifBlimits marks valid block limits in dqb_valid (QIF_BLIMITS).
	qifBlimits = 1
	// dqBlkSize is the unit of dqb_b*limit (QIF_DQBLKSIZE).
	dqBlkSize = 1024
)

// dqblk is struct if_dqblk.
type dqblk struct {
	BHardLimit uint64
	BSoftLimit uint64
	CurSpace   uint64
	IHardLimit uint64
	ISoftLimit uint64
	CurInodes  uint64
	BTime      uint64
	ITime      uint64
	Valid      uint32
	_          uint32
}

// Get returns uid's block quota on the filesystem that holds path (or will
// hold it: a path not created yet is asked about through its nearest
// existing ancestor). uid is as the calling process sees it.
func Get(path string, uid int) (Usage, error) {
	f, err := openExisting(path)
	if err != nil {
		return Usage{}, fmt.Errorf("quota: %w", err)
	}
	defer f.Close()
	var q dqblk
	cmd := uintptr(qGetQuota<<8 | usrQuota)
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, f.Fd(), cmd, uintptr(uid), uintptr(unsafe.Pointer(&q)), 0, 0)
	switch errno {
	case 0:
	case unix.ESRCH, unix.ENOSYS, unix.ENOTSUP, unix.EINVAL, unix.ENOENT, unix.ENOTTY:
		return Usage{}, fmt.Errorf("%w on %s: %v", ErrNoQuota, path, errno)
	case unix.EPERM:
		if uid == os.Geteuid() {
			// The kernel lets anyone read their own quota: this refusal
			// is a seccomp filter's or a security module's.
			return Usage{}, fmt.Errorf("quota: quotactl_fd(%s, uid %d): %w (reading one's own quota: a seccomp filter or security module refused it, e.g. systemd-nspawn's)", path, uid, errno)
		}
		return Usage{}, fmt.Errorf("quota: quotactl_fd(%s, uid %d): %w", path, uid, errno)
	default:
		return Usage{}, fmt.Errorf("quota: quotactl_fd(%s, uid %d): %w", path, uid, errno)
	}
	u := Usage{
		SoftLimitBytes: int64(q.BSoftLimit) * dqBlkSize,
		HardLimitBytes: int64(q.BHardLimit) * dqBlkSize,
		UsedBytes:      int64(q.CurSpace),
	}
	if q.Valid&qifBlimits == 0 || u.SoftLimitBytes == 0 && u.HardLimitBytes == 0 {
		return u, fmt.Errorf("%w on %s: no block limit for uid %d", ErrNoQuota, path, uid)
	}
	if u.SoftLimitBytes == 0 {
		// Only a hard limit: treat it as the limit to stay under.
		u.SoftLimitBytes = u.HardLimitBytes
	}
	return u, nil
}

// openExisting opens path, or its nearest existing ancestor when path does
// not exist yet (a new store's graphroot is created on that filesystem).
func openExisting(path string) (*os.File, error) {
	p := filepath.Clean(path)
	for {
		f, err := os.Open(p)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil, err
		}
		p = parent
	}
}

// Reading is the outcome of one Get in a form that travels to another
// process: the parent reads the quota outside the rootless user namespace
// and the process re-executed inside it uses the figures.
type Reading struct {
	Path    string `json:"path"` // the path asked about (the graphroot)
	UID     int    `json:"uid"`  // whose quota, as the reading process saw it
	Usage   Usage  `json:"usage"`
	NoQuota string `json:"no_quota,omitempty"` // ErrNoQuota's detail: no quota applies
	Err     string `json:"error,omitempty"`    // the read failed (reported, never acted on)
}

// Read calls Get and records its outcome.
func Read(path string, uid int) Reading {
	r := Reading{Path: path, UID: uid}
	u, err := Get(path, uid)
	switch {
	case err == nil:
		r.Usage = u
	case errors.Is(err, ErrNoQuota):
		r.NoQuota = err.Error()
	default:
		r.Err = err.Error()
	}
	return r
}

// Result returns the reading as Get returned it: the usage, or an error
// that matches ErrNoQuota when no quota applies.
func (r Reading) Result() (Usage, error) {
	switch {
	case r.Err != "":
		return Usage{}, errors.New(r.Err)
	case r.NoQuota != "":
		return Usage{}, fmt.Errorf("%w (%s)", ErrNoQuota, r.NoQuota)
	case r.Usage.SoftLimitBytes <= 0 || r.Usage.UsedBytes < 0 || r.Usage.HardLimitBytes < 0:
		// Get never returns such figures: the reading was not Get's.
		return Usage{}, fmt.Errorf("quota: invalid reading for uid %d on %s: %+v", r.UID, r.Path, r.Usage)
	}
	return r.Usage, nil
}
