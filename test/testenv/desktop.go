package testenv

import (
	"bufio"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// Desktop is a graphical session for one test: an Xvfb display, a private
// session bus and dunst, Debian's notification daemon, drawing on the
// display and owning org.freedesktop.Notifications on the bus. Tests look
// at it as a person would: what the server displayed (Shown), a screenshot
// of the screen, and its context menu to invoke a notification's action
// (InvokeAction), which makes dunst emit ActionInvoked on the bus; and a
// text viewer that xdg-open uses in this session (Env, Opened).
type Desktop struct {
	// Bus is the session bus dunst serves on.
	Bus *DBus
	// Display is the X display, e.g. ":3".
	Display string
	dir     string
	conn    *dbus.Conn
	next    int // NextShown's cursor into Shown
}

// Server names of dunst's own control interface (dunstctl uses it).
const (
	dunstIface = "org.dunstproject.cmd0"
	fdnName    = "org.freedesktop.Notifications"
	fdnPath    = dbus.ObjectPath("/org/freedesktop/Notifications")
)

// StartDesktop starts Xvfb on a free display, a private session bus and
// dunst on both, and waits until dunst answers on the bus; everything is
// stopped when the test ends. Every urgency stays on screen until closed
// (timeout 0), so a test sees what it sent.
func StartDesktop(t testing.TB) *Desktop {
	t.Helper()
	RequireTool(t, "Xvfb", "dunst", "xwd")
	dir, err := os.MkdirTemp("", "stwg-desk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	d := &Desktop{dir: dir}
	for _, sub := range []string{"shown", "menu", "opened", "xdg/applications"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d.Display = startXvfb(t, dir)
	d.Bus = StartDBus(t, "session")

	writeExec(t, filepath.Join(dir, "shown.sh"), fmt.Sprintf(shownScript, filepath.Join(dir, "shown")))
	writeExec(t, filepath.Join(dir, "pick.sh"), fmt.Sprintf(pickScript, filepath.Join(dir, "menu")))
	writeExec(t, filepath.Join(dir, "opened.sh"), fmt.Sprintf(openedScript, filepath.Join(dir, "opened")))
	writeFile(t, filepath.Join(dir, "xdg/applications/stowage-test-viewer.desktop"),
		fmt.Sprintf(viewerEntry, filepath.Join(dir, "opened.sh")))
	writeFile(t, filepath.Join(dir, "xdg/applications/mimeapps.list"),
		"[Default Applications]\ntext/plain=stowage-test-viewer.desktop\n")
	conf := filepath.Join(dir, "dunstrc")
	writeFile(t, conf, fmt.Sprintf(dunstrc, filepath.Join(dir, "pick.sh"), filepath.Join(dir, "shown.sh")))

	cmd := exec.Command("dunst", "-config", conf)
	// X only: dunst would draw on a Wayland display it inherited.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WAYLAND_DISPLAY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, d.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	logf, err := os.Create(filepath.Join(dir, "dunst.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("dunst: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		logf.Close()
	})

	conn, err := dbus.Connect(d.Bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d.conn = conn
	deadline := time.Now().Add(15 * time.Second)
	for {
		var name, vendor, version, spec string
		err := conn.Object(fdnName, fdnPath).Call(fdnName+".GetServerInformation", 0).Store(&name, &vendor, &version, &spec)
		if err == nil && name == "dunst" {
			return d
		}
		select {
		case <-exited:
			t.Fatalf("dunst exited: %s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dunst did not answer on the bus: %v (%q); log: %s", err, name, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startXvfb starts Xvfb on a display it picks itself (-displayfd) and
// returns the display's name.
func startXvfb(t testing.TB, dir string) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	logPath := filepath.Join(dir, "xvfb.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatalf("Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(r).ReadString('\n')
	n, convErr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || convErr != nil {
		b, _ := os.ReadFile(logPath)
		t.Fatalf("Xvfb did not print its display (%q, %v): %s", line, err, b)
	}
	return ":" + strconv.Itoa(n)
}

// Env is the session's environment: DISPLAY, DBUS_SESSION_BUS_ADDRESS and
// XDG_DATA_DIRS with the session's applications first, where text/plain
// opens in a viewer that records what it was given (Opened): a process
// running with it that opens a text file with xdg-open, as a desktop
// would, can be checked.
func (d *Desktop) Env() []string {
	return []string{"DISPLAY=" + d.Display, "DBUS_SESSION_BUS_ADDRESS=" + d.Bus.Address,
		"XDG_DATA_DIRS=" + filepath.Join(d.dir, "xdg") + ":/usr/local/share:/usr/share"}
}

// Opened is a file the session's text viewer was asked to open.
type Opened struct {
	// Path is the file's path as the viewer got it.
	Path string
	// Content is the file's content when it was opened.
	Content string
}

// Opened returns the files the session's text viewer opened, in order.
func (d *Desktop) Opened(t testing.TB) []Opened {
	t.Helper()
	root := filepath.Join(d.dir, "opened")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []Opened
	for _, e := range ents { // ReadDir sorts: <nanoseconds>, the order of opening
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path, err := os.ReadFile(filepath.Join(root, e.Name(), "path"))
		if err != nil {
			t.Fatal(err)
		}
		content, err := os.ReadFile(filepath.Join(root, e.Name(), "content"))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, Opened{Path: string(path), Content: string(content)})
	}
	return out
}

// WaitOpened waits up to timeout until the viewer opened n files and
// returns them.
func (d *Desktop) WaitOpened(t testing.TB, n int, timeout time.Duration) []Opened {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := d.Opened(t)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files opened within %s, want %d: %+v", len(got), timeout, n, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns what dunst printed so far.
func (d *Desktop) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dunst.log"))
	return string(b)
}

// Shown is a notification as the notification server displayed it (its
// rule script's environment).
type Shown struct {
	ID           uint32
	AppName      string
	Summary      string
	Body         string
	Urgency      string // LOW, NORMAL or CRITICAL
	DesktopEntry string
	IconPath     string
}

// Shown returns every notification the server displayed, in order; a
// notification updated in place appears once per update.
func (d *Desktop) Shown(t testing.TB) []Shown {
	t.Helper()
	root := filepath.Join(d.dir, "shown")
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names) // <nanoseconds>-<id>: the order dunst showed them
	out := make([]Shown, 0, len(names))
	for _, n := range names {
		read := func(f string) string {
			b, err := os.ReadFile(filepath.Join(root, n, f))
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		id, err := strconv.ParseUint(read("ID"), 10, 32)
		if err != nil {
			t.Fatalf("shown %s: id: %v", n, err)
		}
		out = append(out, Shown{ID: uint32(id), AppName: read("APP_NAME"), Summary: read("SUMMARY"),
			Body: read("BODY"), Urgency: read("URGENCY"), DesktopEntry: read("DESKTOP_ENTRY"), IconPath: read("ICON_PATH")})
	}
	return out
}

// WaitShown waits up to timeout for the server to display notification id
// and returns its latest display (dunst may reuse the id of a closed
// notification that a client replaces: NextShown tells displays apart).
func (d *Desktop) WaitShown(t testing.TB, id uint32, timeout time.Duration) Shown {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var last *Shown
		for _, s := range d.Shown(t) {
			if s.ID == id {
				last = &s
			}
		}
		if last != nil {
			return *last
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification %d not shown within %s; shown: %+v; log: %s", id, timeout, d.Shown(t), d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// NextShown waits up to timeout for the next display NextShown has not
// returned yet (a new notification or an update in place) and returns it.
func (d *Desktop) NextShown(t testing.TB, timeout time.Duration) Shown {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if shown := d.Shown(t); len(shown) > d.next {
			d.next++
			return shown[d.next-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no notification shown within %s (%d before); log: %s", timeout, d.next, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Displayed returns how many notifications are on screen now.
func (d *Desktop) Displayed(t testing.TB) uint32 {
	t.Helper()
	v, err := d.conn.Object(fdnName, fdnPath).GetProperty(dunstIface + ".displayedLength")
	if err != nil {
		t.Fatalf("dunst displayedLength: %v", err)
	}
	n, ok := v.Value().(uint32)
	if !ok {
		t.Fatalf("dunst displayedLength: %v is not a uint32", v)
	}
	return n
}

// WaitDisplayed waits up to timeout until n notifications are on screen
// (and drawn: dunst draws before it reports them displayed is not
// guaranteed, so it also gives the X server a moment).
func (d *Desktop) WaitDisplayed(t testing.TB, n uint32, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d.Displayed(t) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications displayed, want %d; log: %s", d.Displayed(t), n, d.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}

// CloseAll closes every displayed notification, as a user dismissing them
// (dunst emits NotificationClosed and keeps them in its history).
func (d *Desktop) CloseAll(t testing.TB) {
	t.Helper()
	if err := d.conn.Object(fdnName, fdnPath).Call(dunstIface+".NotificationCloseAll", 0).Err; err != nil {
		t.Fatalf("dunst NotificationCloseAll: %v", err)
	}
}

// History is a closed notification in the server's history.
type History struct {
	ID      int32
	AppName string
	Summary string
	Body    string
}

// History returns the server's history of closed notifications, newest
// first (dunstctl history).
func (d *Desktop) History(t testing.TB) []History {
	t.Helper()
	var raw []map[string]dbus.Variant
	if err := d.conn.Object(fdnName, fdnPath).Call(dunstIface+".NotificationListHistory", 0).Store(&raw); err != nil {
		t.Fatalf("dunst NotificationListHistory: %v", err)
	}
	out := make([]History, 0, len(raw))
	for _, m := range raw {
		var h History
		_ = m["id"].Store(&h.ID)
		_ = m["appname"].Store(&h.AppName)
		_ = m["summary"].Store(&h.Summary)
		_ = m["body"].Store(&h.Body)
		out = append(out, h)
	}
	return out
}

// MenuEntry is one action dunst's context menu offers.
type MenuEntry struct {
	ID      uint32
	Key     string
	Label   string
	Summary string
}

// Menu opens dunst's context menu (dunstctl context), selects nothing and
// returns the actions it offered for the displayed notifications.
func (d *Desktop) Menu(t testing.TB) []MenuEntry {
	t.Helper()
	return d.contextMenu(t, 0, "")
}

// InvokeAction opens dunst's context menu and selects the action labelled
// label of notification id, as a user picking it: dunst then emits
// ActionInvoked(id, key) to the notification's sender (a unicast signal:
// only the connection that sent Notify receives it) and leaves the
// notification on screen. The test fails when the menu has no such entry.
func (d *Desktop) InvokeAction(t testing.TB, id uint32, label string) {
	t.Helper()
	menu := d.contextMenu(t, id, label)
	for _, e := range menu {
		if e.ID == id && e.Label == label {
			return
		}
	}
	t.Fatalf("dunst's context menu has no action %q for notification %d: %+v", label, id, menu)
}

// contextMenu asks dunst for its context menu; the pick script (dunst's
// dmenu) records the menu and selects the entry id/label, if any.
func (d *Desktop) contextMenu(t testing.TB, id uint32, label string) []MenuEntry {
	t.Helper()
	dir := filepath.Join(d.dir, "menu")
	if strings.ContainsAny(label, "\n") {
		t.Fatalf("InvokeAction: label %q spans lines", label)
	}
	_ = os.Remove(filepath.Join(dir, "offered"))
	writeFile(t, filepath.Join(dir, "want"), fmt.Sprintf("%d\n%s\n", id, label))
	// dunst refuses a menu while its previous one's thread is still
	// finishing (after the pick script exited), so ask again until one
	// opens; a menu that did open is never asked for twice, since the
	// script records it before the next try.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := d.conn.Object(fdnName, fdnPath).Call(dunstIface+".ContextMenuCall", 0).Err; err != nil {
			t.Fatalf("dunst ContextMenuCall: %v", err)
		}
		retry := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(retry) {
			b, err := os.ReadFile(filepath.Join(dir, "offered"))
			if err == nil {
				return parseMenu(string(b))
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("dunst did not open its context menu (no notification with actions displayed?); log: %s", d.Log())
		}
	}
}

// parseMenu parses dunst's context menu lines "#LABEL (SUMMARY) [ID,KEY]";
// other lines (URLs) are skipped.
func parseMenu(s string) []MenuEntry {
	var out []MenuEntry
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "#") || !strings.HasSuffix(line, "]") {
			continue
		}
		open := strings.LastIndex(line, " [")
		comma := strings.LastIndex(line, ",")
		if open < 0 || comma < open {
			continue
		}
		id, err := strconv.ParseUint(line[open+2:comma], 10, 32)
		if err != nil {
			continue
		}
		e := MenuEntry{ID: uint32(id), Key: line[comma+1 : len(line)-1]}
		text := line[1:open] // LABEL (SUMMARY)
		if i := strings.Index(text, " ("); i >= 0 && strings.HasSuffix(text, ")") {
			e.Label, e.Summary = text[:i], text[i+2:len(text)-1]
		} else {
			e.Label = text
		}
		out = append(out, e)
	}
	return out
}

// Screenshot captures the whole screen and writes it to path as PNG.
func (d *Desktop) Screenshot(t testing.TB, path string) image.Image {
	t.Helper()
	img := d.Capture(t)
	WritePNG(t, path, img)
	return img
}

// Capture returns the screen's root window (xwd).
func (d *Desktop) Capture(t testing.TB) image.Image {
	t.Helper()
	out, err := exec.Command("xwd", "-root", "-silent", "-display", d.Display).Output()
	if err != nil {
		t.Fatalf("xwd: %v", err)
	}
	img, err := DecodeXWD(out)
	if err != nil {
		t.Fatalf("xwd: %v", err)
	}
	return img
}

// WritePNG writes img to path as PNG, creating its directory.
func WritePNG(t testing.TB, path string, img image.Image) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		t.Fatalf("%s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeExec(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// dunstrc configures dunst for tests: dmenu is the pick script, every
// urgency stays until closed, and a rule matching every notification runs
// the shown script. %[1]s is the pick script, %[2]s the shown script.
const dunstrc = `[global]
    font = DejaVu Sans 10
    width = 420
    offset = 16x16
    frame_width = 2
    padding = 10
    horizontal_padding = 10
    icon_path = /usr/share/icons/Adwaita/512x512/devices:/usr/share/icons/Adwaita/48x48/devices
    max_icon_size = 48
    dmenu = %[1]s
    show_indicators = yes
    history_length = 100
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
[shown]
    appname = "*"
    script = %[2]s
`

// shownScript records a displayed notification as one directory of files
// (dunst passes its fields in DUNST_* variables), written aside and renamed
// so a reader never sees half of it. %[1]s is the directory.
const shownScript = `#!/bin/sh
dir=%[1]s
n=$(date +%%s%%N)-$DUNST_ID
mkdir "$dir/.$n" || exit 1
for v in ID APP_NAME SUMMARY BODY URGENCY DESKTOP_ENTRY ICON_PATH; do
	eval "printf '%%s' \"\$DUNST_$v\"" >"$dir/.$n/$v"
done
mv "$dir/.$n" "$dir/$n"
`

// pickScript stands in for dmenu: dunst writes its context menu to stdin
// and runs the line printed back. It selects the entry of the notification
// id and label in the want file (none when the label is empty) and records
// the menu in "offered" last, when the choice is made. %[1]s is the
// directory.
const pickScript = `#!/bin/sh
dir=%[1]s
cat >"$dir/menu.tmp"
{ read -r id; read -r label; } <"$dir/want"
if [ -n "$label" ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in
		"#$label ("*") [$id,"*"]") printf '%%s\n' "$line"; break ;;
		esac
	done <"$dir/menu.tmp"
fi
mv "$dir/menu.tmp" "$dir/offered"
`

// viewerEntry is the session's text viewer: xdg-open runs its Exec line
// for text/plain (mimeapps.list beside it). %[1]s is the opened script.
const viewerEntry = `[Desktop Entry]
Type=Application
Name=stowage test viewer
Exec=%[1]s %%f
MimeType=text/plain;
NoDisplay=true
`

// openedScript records a file it is asked to open: its path and a copy,
// in a directory written aside and renamed. %[1]s is the directory.
const openedScript = `#!/bin/sh
dir=%[1]s
n=$(date +%%s%%N)
mkdir "$dir/.$n" || exit 1
printf '%%s' "$1" >"$dir/.$n/path"
cp "$1" "$dir/.$n/content" || : >"$dir/.$n/content"
mv "$dir/.$n" "$dir/$n"
`
