// Package quota reads a user's disk quota (ext4/xfs user quota) on the
// filesystem holding a path, with quotactl_fd(2): no device lookup needed,
// and it works for an unprivileged user reading their own quota (also inside
// the rootless user namespace, where the uid is mapped back by the kernel).
package quota

import (
	"errors"
	"fmt"
	"os"
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

// Get returns uid's block quota on the filesystem that holds path.
func Get(path string, uid int) (Usage, error) {
	f, err := os.Open(path)
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
