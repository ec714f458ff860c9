package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/notify"
	"github.com/stowage/stowage/test/testenv"
)

// TestActionsOnDunst: the user daemon's notifications on a real
// notification server (dunst under Xvfb, test/testenv's desktop), each
// action picked in dunst's menu as a user would: "Show report" opens the
// run's report in the session's text viewer through xdg-open, "Free 2 GB
// now" starts a prune run, "Pull update" a refresh --pull of the one
// reference, "Don't remind me" snoozes it.
func TestActionsOnDunst(t *testing.T) {
	desk := testenv.StartDesktop(t)
	for _, kv := range desk.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	runtime := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", runtime)
	t.Setenv("INVOCATION_ID", "") // not under systemd: plain xdg-open
	t.Setenv("STWG_DRIFT_REF", filepath.Join(t.TempDir(), "ref"))
	h := start(t, shWorker(actionsScript), basePolicy, func(o *Options) { o.NoBus, o.BusAddress = false, desk.Bus.Address })
	const wait = 20 * time.Second
	// Screenshots of each notification with its actions, into
	// $STOWAGE_SCREENSHOTS when set; each is dismissed once acted on.
	out := os.Getenv("STOWAGE_SCREENSHOTS")
	if out == "" {
		out = t.TempDir()
	}
	empty := desk.Capture(t)
	next := func(name string) testenv.Shown {
		t.Helper()
		desk.CloseAll(t)
		desk.WaitDisplayed(t, 0, wait)
		s := desk.NextShown(t, wait)
		desk.WaitDisplayed(t, 1, wait)
		testenv.WritePNG(t, filepath.Join(out, "action-"+name+".png"), testenv.Crop(desk.Capture(t), empty, 8))
		return s
	}

	// Findings about two references: "Show report".
	v, err := h.d.Trigger("verify", false)
	if err != nil {
		t.Fatal(err)
	}
	shown := next("report")
	if shown.Summary != "stowage verify: 2 new findings" {
		t.Fatalf("shown %+v", shown)
	}
	desk.InvokeAction(t, shown.ID, "Show report")
	opened := desk.WaitOpened(t, 1, wait)
	if want := filepath.Join(runtime, "stowage", "reports", v.ID+".txt"); opened[0].Path != want ||
		!strings.HasPrefix(opened[0].Content, "run "+v.ID+": verify succeeded\nok verify\n") {
		t.Fatalf("opened %+v, want %s with the run's report", opened[0], want)
	}

	// A quota shortfall: "Free 2 GB now".
	p, err := h.d.Trigger("prune", false)
	if err != nil {
		t.Fatal(err)
	}
	shown = next("prune")
	desk.InvokeAction(t, shown.ID, "Free 2 GB now")
	runWith(t, h, "prune", func(r *api.Run) bool { return r.ID != p.ID })

	// A drift of one reference: "Pull update", then "Don't remind me" on
	// the next one.
	if _, err := h.d.Trigger("refresh", false); err != nil {
		t.Fatal(err)
	}
	shown = next("pull")
	desk.InvokeAction(t, shown.ID, "Pull update")
	pull := runWith(t, h, "refresh", func(r *api.Run) bool { return len(r.Args) > 0 })
	if !slices.Equal(pull.Args, []string{"--pull=example.org/app:1"}) || pull.Outcome != api.OutcomeSucceeded {
		t.Fatalf("pull run %+v", pull)
	}
	if err := os.WriteFile(os.Getenv("STWG_DRIFT_REF"), []byte("example.org/other:2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.d.Trigger("refresh", false); err != nil {
		t.Fatal(err)
	}
	shown = next("snooze")
	desk.InvokeAction(t, shown.ID, "Don't remind me")
	waitFor(t, "the snooze", func() bool {
		s, err := notify.ListSnoozed(h.d.opts.State)
		return err == nil && len(s) == 1 && s[0].Ref == "example.org/other:2"
	})
}
