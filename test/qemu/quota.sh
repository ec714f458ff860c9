#!/bin/bash
# quota.sh [STOWAGE_BIN] — prune against a kernel that enforces disk quotas.
#
# The host's kernel may lack quota support (CONFIG_QFMT_V2), so this boots
# Debian 12's own kernel in qemu (software emulation, TCG) on a copy of the
# e2e bookworm rootfs. The guest needs no systemd: a small init
# (test/qemu/guest.sh) mounts an ext4 with the quota feature as /home
# (usrquota), fills a rootless user's podman store past 90% of a soft limit
# set with setquota, runs `stowage run prune` as that user, then once more
# through the user's `stowage daemon` (`stowage trigger prune`), and prints
# `quota -u` before and after, the reports and PASS/FAIL lines on the serial
# console, then powers off. This script parses them, adds its own checks
# and prints "N passed, N failed".
#
# The derived kernel, initrd and root image are cached under
# $STOWAGE_E2E_CACHE (/var/cache/stowage-e2e) keyed by the rootfs and this
# recipe; the cached tree rootfs.sh built is never modified, and the guest
# writes to the root image only through a throw-away snapshot. Needs root,
# qemu-system-x86, e2fsprogs, systemd-container, jq (test/deps.sh).
set -euo pipefail

BIN=$(realpath "${1:-bin/stowage}")
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${STOWAGE_E2E_CACHE:-/var/cache/stowage-e2e}
TIMEOUT=${STOWAGE_QEMU_TIMEOUT:-480}
RECIPE=1
# Installed into the copy: the kernel (with initramfs-tools as its
# dependency) and the quota tools.
PKGS="linux-image-amd64 quota"
GUEST_USER=stwguser
GUEST_UID=1000

[ -x "$BIN" ] || { echo "quota.sh: $BIN: no stowage binary (make build)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "quota.sh: must run as root" >&2; exit 2; }
for t in qemu-system-x86_64 mkfs.ext4 systemd-nspawn jq; do
	command -v "$t" >/dev/null || { echo "quota.sh: $t missing (bash test/deps.sh)" >&2; exit 2; }
done
start=$(date +%s)

rootfs=$(bash "$here/../e2e/rootfs.sh" bookworm | tail -n1)
# The init stub is part of the root image, so it is part of the key.
init_stub='#!/bin/sh
# stowage qemu test: mount the payload disk and run its script as PID 1.
mount -o remount,rw /
mkdir -p /payload
mount -o ro /dev/vdb /payload && exec /bin/bash /payload/guest.sh
echo "FAIL cannot mount the payload disk"
echo o >/proc/sysrq-trigger
sleep 60'
key=$(printf '%s\n' "$RECIPE" "$rootfs" "$PKGS" "$GUEST_USER" "$GUEST_UID" "$init_stub" | sha256sum | cut -c1-16)
dir=$CACHE/qemu-bookworm-$key

# build makes vmlinuz, initrd.img and root.img in $dir from a copy of the
# rootfs (first run only).
build() {
	local tree=$dir/tree log=$dir/build.log
	echo "quota.sh: building the guest image in $dir (first run only)" >&2
	rm -rf "$dir"
	mkdir -p "$dir"
	fail() {
		tail -n 40 "$log" >&2
		echo "quota.sh: building the guest image failed; full log in $log" >&2
		exit 1
	}
	cp -a "$rootfs" "$tree"
	in_tree() {
		SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$tree" --register=no \
			--keep-unit --resolv-conf=copy-host env DEBIAN_FRONTEND=noninteractive "$@"
	}
	in_tree apt-get update >>"$log" 2>&1 || fail
	in_tree apt-get install -y --no-install-recommends $PKGS >>"$log" 2>&1 || fail
	in_tree useradd -M -d /home/$GUEST_USER -u $GUEST_UID -s /bin/bash $GUEST_USER >>"$log" 2>&1 || fail
	echo "$GUEST_USER:100000:65536" >"$tree/etc/subuid"
	echo "$GUEST_USER:100000:65536" >"$tree/etc/subgid"
	printf '%s\n' "$init_stub" >"$tree/usr/local/sbin/stowage-qemu-init"
	chmod 755 "$tree/usr/local/sbin/stowage-qemu-init"
	rm -rf "$tree/var/cache/apt/archives/"*.deb "$tree/var/lib/apt/lists/"*
	cp -L "$tree/vmlinuz" "$dir/vmlinuz"
	cp -L "$tree/initrd.img" "$dir/initrd.img"
	local mib
	mib=$(($(du -sm "$tree" | cut -f1) * 5 / 4 + 200))
	mkfs.ext4 -q -F -L stwg-root -d "$tree" "$dir/root.img" "${mib}M" >>"$log" 2>&1 || fail
	rm -rf "$tree"
	touch "$dir/.complete"
}
mkdir -p "$CACHE"
# One build at a time; a second run waits and then uses it.
exec 9>"$dir.lock"
flock 9
[ -f "$dir/.complete" ] || build
flock -u 9
built=$(date +%s)

work=$(mktemp -d /tmp/stowage-qemu.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The payload disk: stowage, the guest script and the policy (read-only).
mkdir "$work/payload"
install -m755 "$BIN" "$work/payload/stowage"
install -m755 "$here/guest.sh" "$work/payload/guest.sh"
printf 'GUEST_USER=%s\nGUEST_UID=%s\n' "$GUEST_USER" "$GUEST_UID" >"$work/payload/env"
# Every image may go, as far as age and per-repository retention go: only
# the quota's watermarks decide how many.
printf 'version = 1\n[prune]\nmin_free = "0"\nmin_age = "0"\nkeep_last = 0\n' >"$work/payload/policy.toml"
mkfs.ext4 -q -F -L stwg-payload -d "$work/payload" "$work/payload.img" \
	"$(($(du -sm "$work/payload" | cut -f1) + 16))M" >/dev/null
# /home: ext4 with the quota feature (usage is accounted from mkfs on).
mkfs.ext4 -q -F -L stwg-home -O quota -E quotatype=usrquota "$work/home.img" 512M >/dev/null

# Software emulation by default: it runs anywhere (CI has no usable KVM);
# STOWAGE_QEMU_ACCEL=kvm where it works.
accel=${STOWAGE_QEMU_ACCEL:-tcg}
echo "quota.sh: booting Debian's kernel (accel $accel, timeout ${TIMEOUT}s)" >&2
console=$work/console.log
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 -accel "$accel" -m 1024 -smp 2 \
	-display none -monitor none -serial "file:$console" -no-reboot -nodefaults \
	-kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 init=/usr/local/sbin/stowage-qemu-init panic=-1 fsck.mode=skip quiet loglevel=3" \
	-drive "file=$dir/root.img,if=virtio,format=raw,snapshot=on" \
	-drive "file=$work/payload.img,if=virtio,format=raw,readonly=on" \
	-drive "file=$work/home.img,if=virtio,format=raw" </dev/null
qrc=$?
set -e
end=$(date +%s)
tr -d '\r' <"$console" >"$work/console.txt"
# The guest's own lines (the kernel's are prefixed with a timestamp).
grep -v '^\[ *[0-9.]*\]' "$work/console.txt" || true

pass=$(grep -c '^PASS ' "$work/console.txt" || true)
failed=$(grep -c '^FAIL ' "$work/console.txt" || true)
check() { # check DESCRIPTION COMMAND... — a host-side check
	if "${@:2}"; then
		echo "PASS $1"
		pass=$((pass + 1))
	else
		echo "FAIL $1"
		failed=$((failed + 1))
	fi
}
check "qemu exited by itself (status $qrc, not the ${TIMEOUT}s timeout)" test "$qrc" != 124 -a "$qrc" != 137
check "the guest finished its script" grep -q '^GUEST DONE$' "$work/console.txt"
guest_checks=$((pass + failed - 1 - 1))
want=$(sed -n 's/^GUEST CHECKS //p' "$work/console.txt")
check "the guest ran all its ${want:-?} checks ($guest_checks)" test "$guest_checks" = "${want:-none}"
# The report the guest printed between markers.
sed -n '/^REPORT BEGIN$/,/^REPORT END$/p' "$work/console.txt" | sed '1d;$d' >"$work/report.json"
report=$work/report.json
# jtest FILTER... — the filter over the report is true (an empty report is not).
jtest() { [ -s "$report" ] && [ "$(jq -r "$@" "$report")" = true ]; }
check "the prune report is JSON" jtest 'type == "object"'
check "the report names the disk quota as the pressure" jtest '.pressure == "quota"'
soft=$(sed -n 's/^SOFT_LIMIT_KIB=//p' "$work/console.txt")
check "the report's limit is the soft limit (${soft:-?} KiB)" jtest --argjson s "${soft:-0}" '.limit_bytes == $s * 1024'
check "the report carries the quota figures" \
	jtest '.metrics.quota_soft_limit_bytes > 0 and .metrics.quota_hard_limit_bytes > .metrics.quota_soft_limit_bytes and .metrics.quota_used_bytes > 0'
# The daemon's run, as `stowage trigger prune --wait --format json` printed it.
sed -n '/^DAEMON RUN BEGIN$/,/^DAEMON RUN END$/p' "$work/console.txt" | sed '1d;$d' >"$work/run2.json"
report=$work/run2.json
soft2=$(sed -n 's/^SOFT_LIMIT2_KIB=//p' "$work/console.txt")
check "the daemon's run succeeded" jtest '.outcome == "succeeded" and .job == "prune"'
check "the daemon's run was pressed by the disk quota, limit ${soft2:-?} KiB" \
	jtest --argjson s "${soft2:-0}" '.report.pressure == "quota" and .report.limit_bytes == $s * 1024'
echo "quota.sh: image $((built - start))s, guest $((end - built))s, total $((end - start))s" >&2
echo "$pass passed, $failed failed"
[ "$failed" = 0 ] && [ "$pass" -gt 0 ]
