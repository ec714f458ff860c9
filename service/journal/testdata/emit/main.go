// Command emit is a test helper for package journal: it is built with the
// journal socket redirected (-ldflags -X ...journal.journalSocket=PATH) and
// logs one entry per event kind plus a grouped error record.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/stowage/stowage/jobs/report"
	"github.com/stowage/stowage/service/journal"
)

func main() {
	h := journal.NewHandler(journal.Options{Level: slog.LevelDebug})
	fmt.Println(h.UsesJournal())
	log := slog.New(h)
	ctx := context.Background()
	kinds := make([]string, 0)
	for k := range journal.MessageIDs() {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		journal.LogEvent(ctx, log, "prune", "run-"+k, report.Event{
			Kind: k, Severity: report.SeverityNormal, Message: "event " + k,
			Image: "img-" + k, Reference: "localhost/ref:" + k, Digest: "sha256:0123", Bytes: 4096,
		})
	}
	log.With(journal.AttrJob, "verify").WithGroup("worker").Error("worker\nfailed",
		journal.AttrError, errors.New("exit status 1"), "pid", 42)
	log.Debug("debug line", "Mixed-Case key", "v w")
}
