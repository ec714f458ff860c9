#!/bin/bash
# metered.sh DEB [SUITE] — end-to-end check of [schedule] defer_on_metered
# against a real NetworkManager, under a real systemd (run.sh calls it on
# bookworm; it runs on its own too).
#
# NetworkManager must not run in run.sh's container: that one shares the
# host's network, whose interfaces and routes NetworkManager would take
# over. So this boots a second container from the same cached rootfs plus
# network-manager (cached beside it) with --private-network, where the
# registry runs on the container's own 127.0.0.1 (the host's docker-registry
# binary, copied in). NetworkManager's primary connection is a veth pair
# with connection.metered yes (this kernel has no dummy interfaces). The
# packaged system service then runs a pull-mode refresh: it must report the
# drift and pull nothing; when the connection is made unmetered, the daemon
# must catch the pull up by itself. Every check prints PASS or FAIL; the last
# line is "N passed, N failed". Must run as root.
{
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
deb=${1:-}
suite=${2:-bookworm}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "usage: $0 STOWAGE.deb [bookworm|trixie|sid]" >&2; exit 2; }
deb=$(readlink -f "$deb")
[ "$(id -u)" = 0 ] || { echo "metered.sh: must run as root" >&2; exit 2; }
for t in systemd-nspawn nsenter docker-registry; do
	command -v "$t" >/dev/null || { echo "metered.sh: $t is missing (test/deps.sh installs it)" >&2; exit 2; }
done

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $suite: metered: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $suite: metered: $*"; }
check() {
	local name=$1
	shift
	if out=$("$@" 2>&1); then
		pass "$name"
	else
		fail "$name"
		printf '%s\n' "$out" | tail -n 15 | sed 's/^/    | /'
	fi
}
finish() {
	echo "$suite: metered: $passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit $?
}

# --- the rootfs with network-manager (cached) ----------------------------------
base=$(bash "$here/rootfs.sh" "$suite") || { fail "build the $suite rootfs"; finish; }
CACHE=${STOWAGE_E2E_CACHE:-/var/cache/stowage-e2e}
nmdir=$CACHE/nm-$(basename "$(dirname "$base")")
if [ ! -f "$nmdir/.complete" ]; then
	echo "metered.sh: adding network-manager to a copy of $base (first run only)" >&2
	rm -rf "$nmdir"
	mkdir -p "$nmdir"
	cp -a "$base" "$nmdir/rootfs"
	apt_opts=()
	[ "$suite" = sid ] && apt_opts=(-o Acquire::Check-Valid-Until=false)
	if ! SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$nmdir/rootfs" --register=no --keep-unit \
		--resolv-conf=copy-host env DEBIAN_FRONTEND=noninteractive sh -c \
		"apt-get ${apt_opts[*]} update && apt-get ${apt_opts[*]} install -y --no-install-recommends network-manager" \
		>"$nmdir/build.log" 2>&1; then
		tail -n 20 "$nmdir/build.log" >&2
		fail "install network-manager into the rootfs"
		finish
	fi
	rm -rf "$nmdir/rootfs/var/cache/apt/archives/"*.deb "$nmdir/rootfs/var/lib/apt/lists/"*
	touch "$nmdir/.complete"
fi

work=$(mktemp -d "/var/tmp/stowage-e2e-metered-$suite.XXXXXX")
nspawn_pid=
cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill -TERM "$nspawn_pid" 2>/dev/null
		for _ in $(seq 90); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
		kill -KILL "$nspawn_pid" 2>/dev/null
	fi
	if [ "${STOWAGE_E2E_KEEP:-}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root=$work/root
cp -a "$nmdir/rootfs" "$root"
echo "stowage-e2e-metered-$suite" >"$root/etc/hostname"
cp "$deb" "$root/var/tmp/stowage.deb"
cp /bin/busybox "$root/var/tmp/busybox"
cp "$(command -v docker-registry)" "$root/usr/local/bin/docker-registry"
mkdir -p "$root/etc/containers/registries.conf.d"
printf '[containers]\npids_limit = 0\ndefault_sysctls = []\nkeyring = false\n' >"$root/etc/containers/containers.conf"
printf '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' >"$root/etc/containers/registries.conf.d/e2e.conf"
# The registry as a unit of the container, on its own loopback.
mkdir -p "$root/var/tmp/registry"
printf 'version: 0.1\nlog: {level: warn}\nstorage:\n  filesystem: {rootdirectory: /var/tmp/registry/data}\n  delete: {enabled: true}\nhttp: {addr: 127.0.0.1:5000}\n' \
	>"$root/var/tmp/registry/config.yml"
printf '[Service]\nExecStart=/usr/local/bin/docker-registry serve /var/tmp/registry/config.yml\n[Install]\nWantedBy=multi-user.target\n' \
	>"$root/etc/systemd/system/e2e-registry.service"
ln -s /etc/systemd/system/e2e-registry.service "$root/etc/systemd/system/multi-user.target.wants/e2e-registry.service"

SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$root" --register=no --keep-unit -b --private-network \
	-M "stowage-e2e-metered-$suite" >"$work/console.log" 2>&1 </dev/null &
nspawn_pid=$!
disown "$nspawn_pid"
leader=
for _ in $(seq 150); do
	for p in $(ps --ppid "$nspawn_pid" -o pid= 2>/dev/null); do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && leader=$p
	done
	[ -n "$leader" ] && break
	sleep 0.2
done
[ -n "$leader" ] || { fail "boot the container"; tail -n 20 "$work/console.log"; finish; }
PATHIN=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ct() { nsenter -t "$leader" -a -- env -i PATH=$PATHIN LANG=C.UTF-8 "$@"; }
wait_for() {
	local n=$1
	shift
	for _ in $(seq $((n * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
	"$@"
}
booted() { ct systemctl is-system-running 2>/dev/null | grep -E '^(running|degraded)$' >/dev/null; }
check "systemd boots with a private network" wait_for 120 booted
check "NetworkManager runs" wait_for 30 ct systemctl is-active NetworkManager
check "the registry answers on the container's 127.0.0.1" wait_for 30 ct /var/tmp/busybox wget -q -O /dev/null http://127.0.0.1:5000/v2/
check "dpkg -i installs the package" ct dpkg -i /var/tmp/stowage.deb

# --- the metered primary connection --------------------------------------------
check "NetworkManager activates a veth connection with connection.metered yes" \
	ct nmcli connection add type veth ifname veth0 veth.peer veth1 con-name metered \
	ipv4.method manual ipv4.addresses 192.0.2.2/24 ipv4.gateway 192.0.2.1 ipv6.method disabled connection.metered yes
ct nmcli connection up metered >/dev/null
nm_metered() { [ "$(ct busctl get-property org.freedesktop.NetworkManager /org/freedesktop/NetworkManager org.freedesktop.NetworkManager Metered)" = "u $1" ]; }
check "NetworkManager reports Metered = 1 (yes)" wait_for 20 nm_metered 1

# --- a drifted tag ----------------------------------------------------------------
ref=127.0.0.1:5000/metered/app:1
image() {
	local v=$1
	ct sh -c "rm -rf /var/tmp/img && mkdir /var/tmp/img && cp /var/tmp/busybox /var/tmp/img/ && echo $v >/var/tmp/img/v &&
		tar -C /var/tmp/img -cf /var/tmp/img.tar . && podman import -q /var/tmp/img.tar localhost/src:$v >/dev/null &&
		podman push -q --tls-verify=false localhost/src:$v docker://$ref"
}
pull_first() { image one && ct podman pull -q --tls-verify=false "$ref" >/dev/null; }
check "push and pull the first image" pull_first
old=$(ct podman image inspect --format '{{.Id}}' "$ref")
check "push new content under the tag" image two

# --- the system service: pull mode, a short settle time ---------------------------
mkdir -p "$root/etc/stowage/stowage.toml.d" "$root/etc/systemd/system/stowage.service.d"
printf '[schedule]\njitter = "0"\n[refresh]\nmode = "pull"\nnewer = "off"\n' >"$root/etc/stowage/stowage.toml.d/e2e.toml"
printf '[Service]\nExecStart=\nExecStart=/usr/bin/stowage daemon --system --idle-exit 5m --deferred-settle 5s\n' \
	>"$root/etc/systemd/system/stowage.service.d/e2e.conf"
ct systemctl daemon-reload
ct systemctl enable -q --now stowage.socket
report=$(ct stowage --system trigger refresh --wait --timeout 120s 2>&1)
deferred() { grep -F 'pulls deferred: metered connection (1 not pulled)' <<<"$report"; }
check "metered: the refresh reports the drift and defers the pull" deferred
unchanged() { [ "$(ct podman image inspect --format '{{.Id}}' "$ref")" = "$old" ]; }
check "metered: the tag was not pulled" unchanged
logged() { ct journalctl -u stowage.service --no-pager -o cat | grep -F 'deferring pulls'; }
check "metered: the journal says the pulls are deferred" logged

# --- unmetered: the daemon catches the pull up by itself ---------------------------
t0=$(date +%s)
ct nmcli connection modify metered connection.metered no
ct nmcli device reapply veth0 >/dev/null
check "NetworkManager reports Metered = 2 (no)" wait_for 20 nm_metered 2
moved() { [ "$(ct podman image inspect --format '{{.Id}}' "$ref")" != "$old" ]; }
check "unmetered: the daemon pulls the drifted tag on its own" wait_for 90 moved
echo "    | catch-up pull $(($(date +%s) - t0)) s after the connection became unmetered (settle 5 s)"
caught_up() { ct journalctl -u stowage.service --no-pager -o cat | grep -F 'catching up deferred work'; }
check "unmetered: the journal shows the catch-up run" caught_up

# --- stowage never starts NetworkManager to ask it ------------------------------
ct systemctl stop NetworkManager
sleep 5
nm_stopped() { ! ct systemctl is-active -q NetworkManager; }
check "a stopped NetworkManager stays stopped while the daemon runs" nm_stopped
daemon_up() { ct systemctl is-active -q stowage.service; }
check "the daemon runs on without NetworkManager" daemon_up

finish
exit
}
