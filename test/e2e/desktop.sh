# desktop.sh — a real notification server in a user's session inside the
# e2e container, sourced by run.sh (it uses run.sh's wait_for). The same
# set-up as the Go harness (test/testenv/desktop.go): Xvfb, Debian's dunst
# on the user's own session bus (/run/user/UID/bus, as the user's systemd
# runs it: dunst.service), a dunst rule that records every notification it
# shows, and dunst's context menu answered by a script that picks an
# action as a user would.
#
# Every function takes a RUNNER first: a command prefix that runs as the
# user with the user's session (run.sh's `as`: XDG_RUNTIME_DIR and
# DBUS_SESSION_BUS_ADDRESS set).
#
#   desktop_start RUNNER N           Xvfb on :N and dunst in the user's session
#   desktop_stop RUNNER              stop both
#   desktop_shown RUNNER             every display so far: ID TAB URGENCY TAB APP TAB SUMMARY TAB BODY (\n for newlines)
#   desktop_wait_shown RUNNER SECS ERE   wait for a display whose line matches ERE; print it
#   desktop_id RUNNER ERE            the id of the latest display whose line matches ERE
#   desktop_history RUNNER           dunstctl history: ID TAB APP TAB SUMMARY TAB BODY
#   desktop_menu RUNNER              the actions dunst's context menu offers (dunst's "#LABEL (SUMMARY) [ID,KEY]" lines)
#   desktop_invoke RUNNER ID LABEL   pick action LABEL of notification ID in dunst's context menu:
#                                    dunst emits ActionInvoked(ID, KEY) to the sender
#   desktop_shot RUNNER N OUT.png    screenshot of :N, cropped to what is drawn (needs the host's convert)
#   desktop_opened RUNNER            every file the session's text viewer opened, oldest first: one
#                                    directory each (path: the path it got; content: a copy)
#
# The session's text viewer: xdg-open (outside a known desktop: its MIME
# lookup with file(1), the user's ~/.config/mimeapps.list and
# ~/.local/share/applications) opens text/plain with a script that
# records what it was given.

# desktop_dir RUNNER — the user's directory of records (shown/, menu/).
desktop_dir() { $1 sh -c 'echo "$HOME/.cache/stowage-e2e"'; }

desktop_start() {
	local sh=$1 n=$2 dir
	dir=$(desktop_dir "$sh") || return 1
	$sh mkdir -p "$dir/shown" "$dir/menu" "$dir/opened" "$($sh sh -c 'echo "$HOME/.config/dunst"')" \
		"$($sh sh -c 'echo "$HOME/.local/share/applications"')" || return 1
	# The text viewer: records the path and a copy of the file it opens.
	$sh tee "$dir/opened.sh" >/dev/null <<'EOF'
#!/bin/sh
dir=$HOME/.cache/stowage-e2e/opened
n=$(date +%s%N)
mkdir "$dir/.$n" || exit 1
printf '%s' "$1" >"$dir/.$n/path"
cp "$1" "$dir/.$n/content" || : >"$dir/.$n/content"
mv "$dir/.$n" "$dir/$n"
EOF
	printf '[Desktop Entry]\nType=Application\nName=stowage e2e viewer\nExec=%s %%f\nMimeType=text/plain;\nNoDisplay=true\n' "$dir/opened.sh" |
		$sh tee "$($sh sh -c 'echo "$HOME/.local/share/applications/stowage-e2e-viewer.desktop"')" >/dev/null || return 1
	printf '[Default Applications]\ntext/plain=stowage-e2e-viewer.desktop\n' |
		$sh tee "$($sh sh -c 'echo "$HOME/.config/mimeapps.list"')" >/dev/null || return 1
	# Records one display as one line (dunst passes the fields in DUNST_*
	# variables; newlines in the body become \n), written aside, then
	# renamed.
	$sh tee "$dir/shown.sh" >/dev/null <<'EOF'
#!/bin/sh
dir=$HOME/.cache/stowage-e2e/shown
n=$(date +%s%N)-$DUNST_ID
mkdir "$dir/.$n" || exit 1
body=$(printf '%s' "$DUNST_BODY" | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/\\n/g')
printf '%s\t%s\t%s\t%s\t%s\n' "$DUNST_ID" "$DUNST_URGENCY" "$DUNST_APP_NAME" "$DUNST_SUMMARY" "$body" >"$dir/.$n/line"
mv "$dir/.$n" "$dir/$n"
EOF
	# dunst's dmenu: records the menu, prints the entry named in "want"
	# (ID, then LABEL; none when LABEL is empty).
	$sh tee "$dir/pick.sh" >/dev/null <<'EOF'
#!/bin/sh
dir=$HOME/.cache/stowage-e2e/menu
cat >"$dir/menu.tmp"
{ read -r id; read -r label; } <"$dir/want"
if [ -n "$label" ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in
		"#$label ("*") [$id,"*"]") printf '%s\n' "$line" | tee "$dir/picked"; break ;;
		esac
	done <"$dir/menu.tmp"
fi
mv "$dir/menu.tmp" "$dir/offered"
EOF
	$sh chmod +x "$dir/shown.sh" "$dir/pick.sh" "$dir/opened.sh" || return 1
	$sh tee "$($sh sh -c 'echo "$HOME/.config/dunst/dunstrc"')" >/dev/null <<EOF
[global]
    font = DejaVu Sans 10
    width = 420
    offset = 16x16
    frame_width = 2
    padding = 10
    horizontal_padding = 10
    icon_path = /usr/share/icons/Adwaita/512x512/devices:/usr/share/icons/Adwaita/48x48/devices
    max_icon_size = 48
    dmenu = $dir/pick.sh
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
    script = $dir/shown.sh
EOF
	$sh systemd-run --user -q --unit="stowage-e2e-xvfb-$n" Xvfb ":$n" -screen 0 1024x768x24 -nolisten tcp || return 1
	wait_for 20 $sh test -S "/tmp/.X11-unix/X$n" || return 1
	# As a graphical session does: the display goes into the user manager's
	# environment, and dunst runs as Debian's user unit.
	$sh systemctl --user set-environment "DISPLAY=:$n" || return 1
	$sh systemctl --user start dunst.service || return 1
	wait_for 20 desktop_is_dunst "$sh"
}

desktop_is_dunst() {
	$1 busctl --user call org.freedesktop.Notifications /org/freedesktop/Notifications \
		org.freedesktop.Notifications GetServerInformation | grep '^ssss "dunst"'
}

desktop_stop() {
	local sh=$1
	$sh systemctl --user stop dunst.service
	$sh systemctl --user unset-environment DISPLAY
	$sh sh -c 'systemctl --user stop "stowage-e2e-xvfb-*.service"'
}

desktop_shown() {
	$1 sh -c 'cat "$HOME"/.cache/stowage-e2e/shown/*/line 2>/dev/null; true'
}

desktop_wait_shown() {
	local sh=$1 secs=$2 re=$3 line
	for _ in $(seq $((secs * 2))); do
		line=$(desktop_shown "$sh" | grep -E -- "$re" | tail -n 1) && [ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
		sleep 0.5
	done
	echo "no notification matching /$re/ shown in ${secs}s; shown:"
	desktop_shown "$sh"
	return 1
}

desktop_id() { desktop_shown "$1" | grep -E -- "$2" | tail -n 1 | cut -f1; }

desktop_opened() {
	$1 sh -c 'ls -d "$HOME"/.cache/stowage-e2e/opened/[0-9]* 2>/dev/null; true'
}

desktop_history() {
	$1 dunstctl history | jq -r '.data[0][] | [.id.data, .appname.data, .summary.data, (.body.data | gsub("\n"; "\\n"))] | map(tostring) | join("\t")'
}

# desktop_context RUNNER ID LABEL — open dunst's context menu with "want"
# set; dunst refuses a menu while the previous one is finishing, so ask
# again until one opens (the script records it before the next try).
desktop_context() {
	local sh=$1 id=$2 label=$3 dir
	dir=$(desktop_dir "$sh")/menu
	$sh rm -f "$dir/offered" "$dir/picked"
	printf '%s\n%s\n' "$id" "$label" | $sh tee "$dir/want" >/dev/null
	for _ in $(seq 30); do
		$sh dunstctl context || return 1
		for _ in 1 2 3; do
			$sh test -f "$dir/offered" && return 0
			sleep 0.1
		done
	done
	echo "dunst did not open its context menu"
	return 1
}

desktop_menu() {
	local sh=$1
	desktop_context "$sh" 0 "" || return 1
	$sh cat "$(desktop_dir "$sh")/menu/offered"
	echo # dunst ends its menu without a newline
}

desktop_invoke() {
	local sh=$1 id=$2 label=$3 dir
	dir=$(desktop_dir "$sh")/menu
	desktop_context "$sh" "$id" "$label" || return 1
	if ! $sh test -s "$dir/picked"; then
		echo "dunst's context menu has no action \"$label\" for notification $id; it offered:"
		$sh cat "$dir/offered"
		echo
		return 1
	fi
	$sh cat "$dir/picked"
}

desktop_shot() {
	local sh=$1 n=$2 out=$3 size
	command -v convert >/dev/null || { echo "convert (imagemagick) is missing: test/deps.sh installs it"; return 1; }
	mkdir -p "$(dirname "$out")"
	$sh xwd -root -silent -display ":$n" >"$out.xwd" || return 1
	# The root window is black: -trim keeps the notifications drawn on it.
	convert "xwd:$out.xwd" -trim +repage -bordercolor black -border 8 "png:$out" || return 1
	rm -f "$out.xwd"
	size=$(identify -format '%w %h' "$out") || return 1
	echo "screenshot $out: ${size/ /x}"
	# A notification's box, not a blank screen (which trims to 1x1).
	[ "${size% *}" -ge 200 ] && [ "${size#* }" -ge 40 ]
}
