package daemon

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stowage/stowage/service/journal"
	"github.com/stowage/stowage/test/testjobs"
)

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestJournalEntries: the daemon logs every run and finding with the kinds
// the journal handler maps to MESSAGE_IDs, and with job and run id fields.
func TestJournalEntries(t *testing.T) {
	var buf syncBuffer
	script := `if [ "$2" = verify ]; then echo "verify: boom" >&2; exit 1; fi
echo '{"time":"t","level":"WARN","msg":"pull failed","image":"abc","job":"other","store":{"driver":"vfs"}}' >&2
printf '{"job":"%s","summary":"s","events":[{"kind":"image_removed","severity":"low","message":"removed old","image":"abc","bytes":7}]}' "$2"`
	h := start(t, shWorker(script), basePolicy, func(o *Options) {
		o.Logger = slog.New(journal.NewHandler(journal.Options{ForceStderr: true, Stderr: &buf, Events: testjobs.Registry().EventKinds()}))
		o.Spawner.Logger = o.Logger // as `stowage daemon` does
	})
	ctx := t.Context()
	var ids []string
	for _, job := range []string{"prune", "verify"} {
		r, err := h.c.Trigger(ctx, job, false)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = h.c.Wait(ctx, r.ID); err != nil || !r.Outcome.Done() {
			t.Fatal(r, err)
		}
		ids = append(ids, r.ID)
	}
	h.stop(t) // flush: observers and logs of the last run are done
	out := buf.String()
	for _, want := range []string{
		"job started job=prune run_id=" + ids[0],
		"kind=" + journal.KindJobStarted,
		"kind=" + journal.KindJobFinished,
		"kind=" + journal.KindJobFailed,
		"<5>removed old kind=" + "image_removed job=prune run_id=" + ids[0],
		"run_id=" + ids[1],
		"<4>verify: boom run_id=" + ids[1] + " trigger=manual job=verify source=worker\n",
		// A worker's JSON record: its level, its attributes after the run's,
		// one that would override a run field renamed.
		"<4>pull failed run_id=" + ids[0] + " trigger=manual job=prune source=worker image=abc worker_job=other store_driver=vfs\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("journal lacks %q", want)
		}
	}
	for _, k := range []string{journal.KindJobStarted, journal.KindJobFinished, journal.KindJobFailed, "image_removed"} {
		if journal.MessageIDs(testjobs.Registry().EventKinds())[k] == "" {
			t.Errorf("kind %s has no MESSAGE_ID", k)
		}
	}
	if t.Failed() {
		t.Logf("journal:\n%s", out)
	}
}
