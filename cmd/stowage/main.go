// Command stowage keeps a Podman host's container storage fresh, trusted and
// lean: a socket-activated daemon that schedules maintenance jobs, and the
// CLI that runs, inspects and controls them.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.podman.io/storage/pkg/reexec"

	"github.com/stowage/stowage/jobs/shared/storeopen"
)

func main() {
	// containers/storage re-executes this binary for some layer operations;
	// without this the first layer write panics.
	if reexec.Init() {
		return
	}
	// Taken (and unset) before anything starts another process.
	handoff, err := storeopen.TakeHandoff()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stowage:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = newRootCmd(handoff).ExecuteContext(ctx)
	stop()
	if err != nil {
		var ec exitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "stowage:", msg)
			}
			os.Exit(ec.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "stowage:", err)
		os.Exit(1)
	}
}

// exitCoder is an error that chooses the process exit status.
type exitCoder interface {
	error
	ExitCode() int
}

// exitError carries an exit status; an empty message prints nothing (the
// command already reported on stderr).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) ExitCode() int { return e.code }
