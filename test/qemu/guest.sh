#!/bin/bash
# guest.sh — PID 1 of the qemu guest that test/qemu/quota.sh boots (no
# systemd): mounts /home (ext4, quota feature) with usrquota, fills a
# rootless user's podman store past the high watermark of a soft limit set
# with setquota, runs `stowage run prune` as that user and prints `quota -u`
# before and after, the report and PASS/FAIL lines on the serial console.
# Then it powers the machine off.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8
# shellcheck source=/dev/null
. /payload/env # GUEST_USER, GUEST_UID
trap 'sync; echo o >/proc/sysrq-trigger; sleep 60' EXIT

ok() { echo "PASS $*"; }
bad() { echo "FAIL $*"; }
check() { # check DESCRIPTION COMMAND...
	if "${@:2}"; then ok "$1"; else bad "$1"; fi
}
die() {
	bad "$*"
	echo "GUEST DONE"
	exit 1
}

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs tmpfs /tmp
mountpoint -q /sys/fs/cgroup || mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount --make-rshared / # as systemd leaves it; rootless podman expects it
ip link set lo up 2>/dev/null
echo "GUEST kernel $(uname -r)"
echo "GUEST CHECKS 13" # every check below, so the host can tell a guest that stopped early

# The ext4 quota feature needs the quota format module (the kernel would
# ask modprobe for it at mount time anyway).
modprobe quota_v2 || die "modprobe quota_v2"
mount -o usrquota /dev/vdc /home || die "mounting /home with usrquota"
check "/home enforces user quotas ($(quotaon -pu /home 2>&1))" sh -c 'quotaon -pu /home 2>&1 | grep -q " is on"'

U=$GUEST_USER
H=/home/$U
R=/run/user/$GUEST_UID
mkdir -p "$H/.config/containers" "$R"
cat >"$H/.config/containers/containers.conf" <<'EOF'
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
chown -R "$U:" "$H" "$R"
chmod 700 "$H" "$R"
as_user=(setpriv --reuid="$GUEST_UID" --regid="$GUEST_UID" --init-groups
	env -i HOME="$H" USER="$U" LOGNAME="$U" PATH="$PATH" LANG="$LANG" XDG_RUNTIME_DIR="$R")
as_user() { "${as_user[@]}" "$@"; }
cd "$H" || die "cd $H"
# blocks prints the user's usage on /home in KiB as the quota tools count it.
blocks() {
	quota -v -w -u "$U" | awk '$1 == "/dev/vdc" { gsub(/[^0-9]/, "", $2); print $2 }'
}

# Eight images of 8 MiB of random data each (one layer apiece), imported
# by the user's own podman; the tarballs stay on /tmp, outside the quota.
n=8
for i in $(seq 0 $((n - 1))); do
	mkdir -p "/tmp/l$i"
	head -c 8M /dev/urandom >"/tmp/l$i/data"
	tar -C "/tmp/l$i" -cf "/tmp/i$i.tar" data
	chmod 644 "/tmp/i$i.tar"
	as_user podman import -q "/tmp/i$i.tar" "localhost/q$i:1" >/dev/null || die "podman import $i"
done
echo "GUEST podman: $(as_user podman info --format '{{.Store.GraphDriverName}} {{.Store.GraphRoot}}')"
check "$n images in the user's store" test "$(as_user podman images -q | wc -l)" = "$n"

STOWAGE=(/payload/stowage --policy /payload/policy.toml --log-level debug)
# A dry run first: stowage's own files (state database, caches) exist
# before the limit is derived from the usage.
as_user "${STOWAGE[@]}" run prune --dry-run --format json >/dev/null 2>/tmp/dry.err ||
	{ sed 's/^/DRY-RUN /' /tmp/dry.err; die "stowage run prune --dry-run"; }
used=$(blocks)
# The soft limit puts the usage at 95%: above the high watermark (90%); the
# prune must take it under the low watermark (80%).
soft=$((used * 100 / 95))
hard=$((soft * 2))
setquota -u "$U" "$soft" "$hard" 0 0 /home || die "setquota"
echo "SOFT_LIMIT_KIB=$soft"
echo "QUOTA BEFORE"
quota -w -u "$U"

as_user "${STOWAGE[@]}" run prune --format json >/tmp/report.json 2>/tmp/prune.err
rc=$?
echo "REPORT BEGIN"
cat /tmp/report.json
echo "REPORT END"
sed 's/^/STDERR /' /tmp/prune.err
echo "QUOTA AFTER"
quota -w -u "$U"
after=$(blocks)
low=$((soft * 80 / 100))
left=$(as_user podman images -q | wc -l)
echo "GUEST usage before ${used} KiB, soft limit ${soft} KiB, low watermark ${low} KiB, after ${after} KiB, images left ${left}"

check "stowage run prune exited 0 (status $rc)" test "$rc" = 0
check "the quota reading crossed into the user namespace" grep -q 'disk quota handed over by the parent process' /tmp/prune.err
check "no quota read error logged" sh -c '! grep -q "reading the disk quota failed" /tmp/prune.err'
check "usage after prune (${after} KiB) is under the low watermark (${low} KiB)" test "${after:-999999999}" -le "$low"
check "the prune stopped at the low watermark (${left} of $n images left)" test "$left" -gt 0 -a "$left" -lt "$n"

# The user daemon: its worker is the same `stowage run prune`, started by
# `stowage daemon` (no systemd here: it listens on its own socket). A lower
# soft limit puts the usage at 92%, above the high watermark again (one
# image's removal then lands clearly under the low one); a triggered run
# must prune it.
soft2=$((after * 100 / 92))
setquota -u "$U" "$soft2" "$((soft2 * 2))" 0 0 /home || die "setquota (daemon)"
echo "SOFT_LIMIT2_KIB=$soft2"
echo "QUOTA BEFORE DAEMON"
quota -w -u "$U"
# Nothing but the triggered prune: no registry is reachable from here.
printf 'version = 1\n[refresh]\nmode = "off"\n[verify]\nmode = "off"\n[prune]\nmin_free = "0"\nmin_age = "0"\nkeep_last = 0\n' >/tmp/daemon.toml
chmod 644 /tmp/daemon.toml
# exec: $! is then the daemon itself, not a shell waiting for it.
(exec "${as_user[@]}" /payload/stowage --policy /tmp/daemon.toml --log-level debug daemon >/tmp/daemon.log 2>&1) &
daemon=$!
for _ in $(seq 60); do
	[ -S "$R/stowage/stowage.sock" ] && break
	sleep 1
done
as_user /payload/stowage trigger prune --wait --format json --timeout 5m >/tmp/run2.json 2>/tmp/trigger.err
rc2=$?
kill "$daemon"
wait "$daemon"
drc=$?
echo "DAEMON RUN BEGIN"
cat /tmp/run2.json
echo "DAEMON RUN END"
sed 's/^/TRIGGER /' /tmp/trigger.err
grep -v 'level=DEBUG' /tmp/daemon.log | sed 's/^/DAEMON /'
echo "QUOTA AFTER DAEMON"
quota -w -u "$U"
after2=$(blocks)
low2=$((soft2 * 80 / 100))
left2=$(as_user podman images -q | wc -l)
echo "GUEST daemon: usage before ${after} KiB, soft limit ${soft2} KiB, low watermark ${low2} KiB, after ${after2} KiB, images left ${left2}"
check "stowage trigger prune --wait exited 0 (status $rc2)" test "$rc2" = 0
check "no quota read error logged by the daemon's worker" sh -c '! grep -q "reading the disk quota failed" /tmp/daemon.log'
check "usage after the daemon's prune (${after2} KiB) is under the low watermark (${low2} KiB)" test "${after2:-999999999}" -le "$low2"
check "the daemon's prune stopped at the low watermark (${left2} of ${left} images left)" test "$left2" -gt 0 -a "$left2" -lt "$left"
check "the daemon's worker got the quota from outside the user namespace" grep -q 'disk quota handed over by the parent process' /tmp/daemon.log
check "the daemon stopped cleanly on SIGTERM (status $drc)" sh -c "test $drc = 0 && ! pgrep -x stowage"
echo "GUEST DONE"
