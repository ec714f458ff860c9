// Command emit is a test helper for package journal: it is built with the
// journal socket redirected (-ldflags -X ...journal.journalSocket=PATH) and
// logs one entry per event kind plus a grouped error record.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/stowage/stowage/jobs/shared/report"
	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/test/testjobs"
)

func main() {
	events := testjobs.Registry().EventKinds()
	h := journal.NewHandler(journal.Options{Level: slog.LevelDebug, Events: events})
	fmt.Println(h.UsesJournal())
	log := slog.New(h)
	ctx := context.Background()
	if len(os.Args) > 1 && os.Args[1] == "pause" {
		// The test takes journald away, then lets us log.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		log.Warn("after journald left", journal.AttrJob, "prune")
		return
	}
	kinds := make([]string, 0)
	for k := range journal.MessageIDs(events) {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		ev := report.Event{
			Kind: k, Severity: report.SeverityNormal, Message: "event " + k,
			Image: "img-" + k, Reference: "localhost/ref:" + k, Digest: "sha256:0123", Bytes: 4096,
		}
		if k == report.EventNewerVersion {
			ev.Newer = "localhost/ref:newer"
		}
		journal.LogEvent(ctx, log, "prune", "run-"+k, ev)
	}
	// A run's records, as the daemon logs them (service/daemon/runs.go).
	run := log.With(journal.AttrJob, "prune", journal.AttrRunID, "r-7")
	run.Info("job started", journal.AttrKind, journal.KindJobStarted, "dry_run", true)
	run.Info("job finished", "duration", (1500 * time.Millisecond).String(), "summary", "freed 3 images", journal.AttrKind, journal.KindJobFinished)
	log.With(journal.AttrJob, "refresh", journal.AttrRunID, "r-8").Error("job failed",
		journal.AttrKind, journal.KindJobFailed, journal.AttrError, errors.New("worker exited 1"))
	journal.LogPolicyInvalid(ctx, log, "/etc/stowage/policy.toml", errors.New("policy.toml:3:1: unknown key"), true)
	log.With(journal.AttrJob, "verify").WithGroup("worker").Error("worker\nfailed",
		journal.AttrError, errors.New("exit status 1"), "pid", 42)
	log.Debug("debug line", "Mixed-Case key", "v w")
}
