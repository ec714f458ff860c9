package storeopen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// runPodmanInfo runs `podman [args] info --format json` and returns its
// stdout. args are podman's global flags, exactly the user's overrides. The
// error carries podman's stderr.
func runPodmanInfo(ctx context.Context, podman string, args []string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := append(append([]string(nil), args...), "info", "--format", "json")
	cmd := exec.CommandContext(ctx, podman, argv...)
	cmd.Env = podmanEnv(os.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Rootless podman may leave its pause process behind; it must not keep
	// us waiting on inherited pipes once podman itself has exited.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (timeout %s)", err, timeout)
		}
		cmdline := strings.Join(append([]string{podman}, argv...), " ")
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("asking podman which store it uses: %s: %w: %s", cmdline, err, msg)
		}
		return nil, fmt.Errorf("asking podman which store it uses: %s: %w", cmdline, err)
	}
	return stdout.Bytes(), nil
}

// podmanEnv is env without what belongs to this process alone: systemd's
// notification, activation and watchdog variables, and the store handoff.
func podmanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "NOTIFY_SOCKET", name == "INVOCATION_ID", name == HandoffEnv,
			strings.HasPrefix(name, "LISTEN_"), strings.HasPrefix(name, "WATCHDOG_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}
