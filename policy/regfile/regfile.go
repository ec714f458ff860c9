// Package regfile reads configuration files that must be regular files of
// a bounded size. A FIFO would block a plain open or read forever, a device
// such as /dev/zero (directly or through a symlink) would never end, and a
// huge file would be read whole into memory; all are refused with an error
// naming the file.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is returned for a path that is not a regular file after
// following symlinks.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is returned for a file above the caller's size limit.
var ErrTooLarge = errors.New("file too large")

// Kind describes a non-regular file mode for an error message.
func Kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// Read returns the content of name, which must be a regular file (symlinks
// are followed) of at most limit bytes. The file is opened non-blocking and
// checked on the opened descriptor, so a FIFO never blocks and a file
// swapped for one between a check and the open is still refused. Errors
// name the file and wrap ErrNotRegular, ErrTooLarge or the os error.
func Read(name string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", name, ErrNotRegular, Kind(fi.Mode()))
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %w (%d bytes, the limit is %d)", name, ErrTooLarge, fi.Size(), limit)
	}
	// The file may grow after the stat: never read more than the limit.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w (more than %d bytes)", name, ErrTooLarge, limit)
	}
	return data, nil
}
