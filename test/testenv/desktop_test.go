package testenv

import (
	"image"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// TestDesktopActionInvoked proves the harness on a raw Notify call: dunst
// shows the notification, the screenshot shows it, and an action picked
// from dunst's context menu reaches the sender as ActionInvoked.
func TestDesktopActionInvoked(t *testing.T) {
	d := StartDesktop(t)
	empty := d.Capture(t)

	conn, err := dbus.Connect(d.Bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(fdnName)); err != nil {
		t.Fatal(err)
	}
	sig := make(chan *dbus.Signal, 16)
	conn.Signal(sig)

	var id uint32
	err = conn.Object(fdnName, fdnPath).Call(fdnName+".Notify", 0, "stowage", uint32(0), "drive-harddisk",
		"Disk nearly full", "2 images would go", []string{"prune", "Free 2 GB now", "report", "Show report"},
		map[string]dbus.Variant{"urgency": dbus.MakeVariant(byte(2))}, int32(-1)).Store(&id)
	if err != nil {
		t.Fatal(err)
	}
	got := d.WaitShown(t, id, 10*time.Second)
	want := Shown{ID: id, AppName: "stowage", Summary: "Disk nearly full", Body: "2 images would go", Urgency: "CRITICAL"}
	if got.ID != want.ID || got.AppName != want.AppName || got.Summary != want.Summary || got.Body != want.Body || got.Urgency != want.Urgency {
		t.Errorf("shown %+v, want %+v", got, want)
	}
	d.WaitDisplayed(t, 1, 10*time.Second)

	out := filepath.Join(t.TempDir(), "shot.png")
	if dir := os.Getenv("STOWAGE_SCREENSHOTS"); dir != "" {
		out = filepath.Join(dir, "harness-raw-notify.png")
	}
	shot := d.Screenshot(t, out)
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("screenshot %s: %v", out, err)
	}
	if n := DiffPixels(empty, shot); n < 2000 {
		t.Errorf("screenshot differs from the empty screen in %d pixels, want a notification's worth (≥2000)", n)
	}
	crop := Crop(shot, empty, 0)
	if b := crop.Bounds(); b.Dx() < 200 || b.Dy() < 40 || b.Dx() > 600 || b.Dy() > 200 {
		t.Errorf("the notification's box is %v, want about 440×70", b)
	}

	menu := d.Menu(t)
	wantMenu := []MenuEntry{
		{ID: id, Key: "prune", Label: "Free 2 GB now", Summary: "Disk nearly full"},
		{ID: id, Key: "report", Label: "Show report", Summary: "Disk nearly full"},
	}
	if !sameEntries(menu, wantMenu) {
		t.Errorf("context menu %+v, want %+v", menu, wantMenu)
	}
	if n := d.Displayed(t); n != 1 {
		t.Errorf("%d displayed after a menu with no choice, want 1", n)
	}

	// Each entry in turn: the menu's last line has no newline after it.
	for _, e := range wantMenu {
		start := time.Now()
		d.InvokeAction(t, id, e.Label)
		timeout := time.After(10 * time.Second)
		for invoked := false; !invoked; {
			select {
			case s := <-sig:
				if s.Name != fdnName+".ActionInvoked" {
					continue
				}
				if !reflect.DeepEqual(s.Body, []any{id, e.Key}) {
					t.Fatalf("ActionInvoked %v, want [%d %s]", s.Body, id, e.Key)
				}
				invoked = true
				t.Logf("ActionInvoked %s %.2fs after the menu was asked for", e.Key, time.Since(start).Seconds())
			case <-timeout:
				t.Fatalf("no ActionInvoked for %q within 10s; log: %s", e.Label, d.Log())
			}
		}
	}
	// dunst 1.9 leaves the notification on screen after an action (the
	// sender closes it); a user's dismissal moves it to the history.
	if n := d.Displayed(t); n != 1 {
		t.Errorf("%d displayed after the action, want 1", n)
	}
	d.CloseAll(t)
	hist := d.History(t)
	if len(hist) != 1 || hist[0].ID != int32(id) || hist[0].Summary != "Disk nearly full" {
		t.Errorf("history %+v, want notification %d", hist, id)
	}
}

func sameEntries(a, b []MenuEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for _, e := range b {
		found := false
		for _, f := range a {
			found = found || e == f
		}
		if !found {
			return false
		}
	}
	return true
}

func TestParseMenu(t *testing.T) {
	got := parseMenu("#Free 1.5 GB now (stowage prune: 2 new findings) [7,prune]\n" +
		"#Show report (a (b) c) [12,report]\nhttps://example.invalid/x\n#broken [x,y]\n")
	want := []MenuEntry{
		{ID: 7, Key: "prune", Label: "Free 1.5 GB now", Summary: "stowage prune: 2 new findings"},
		{ID: 12, Key: "report", Label: "Show report", Summary: "a (b) c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMenu = %+v, want %+v", got, want)
	}
}

func TestCropEmpty(t *testing.T) {
	a := image.NewRGBA(image.Rect(0, 0, 4, 4))
	if b := Crop(a, a, 2).Bounds(); !b.Empty() {
		t.Errorf("crop of identical images %v, want empty", b)
	}
}

// TestDesktopOpensText: xdg-open, run in the session's environment, opens
// a text file in the session's recording viewer.
func TestDesktopOpensText(t *testing.T) {
	RequireTool(t, "xdg-open")
	d := StartDesktop(t)
	f := filepath.Join(t.TempDir(), "RUN.txt")
	if err := os.WriteFile(f, []byte("prune: removed 2 images\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("xdg-open", f)
	// Not the test's own XDG_* or desktop: a plain session.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, d.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xdg-open: %v: %s", err, out)
	}
	got := d.WaitOpened(t, 1, 10*time.Second)
	if len(got) != 1 || got[0].Path != f || got[0].Content != "prune: removed 2 images\n" {
		t.Errorf("opened %+v, want %s with its text", got, f)
	}
}
