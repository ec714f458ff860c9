#!/bin/bash
# rootfs.sh — print the path of a cached, debootstrapped Debian 12 rootfs with
# systemd, D-Bus and podman for the end-to-end test, building it on first use.
#
# The cache key is the package list, so changing it builds a fresh tree. The
# mirror is read from the host's apt sources at run time (never hard-coded).
set -euo pipefail

CACHE=${STOWAGE_E2E_CACHE:-/var/cache/stowage-e2e}
SUITE=bookworm
# BASE goes in with debootstrap; EXTRA with apt inside the tree, so that apt
# resolves virtual dependencies (podman needs a container-network-stack).
BASE=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,polkitd,ca-certificates,procps,iproute2,less
EXTRA="podman netavark aardvark-dns uidmap slirp4netns fuse-overlayfs crun conmon catatonit"

# mirror prints the first apt source URI that serves $SUITE itself (not
# -security/-updates), from one-line .list or deb822 .sources files.
mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v s="$SUITE" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1)==s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$SUITE" 'BEGIN{RS=""; FS="\n"} {
			uri=""; ok=0
			for (i=1;i<=NF;i++) {
				if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri=a[2] }
				if ($i ~ /^Suites:/) { n=split($i, b, /[ \t]+/); for (j=2;j<=n;j++) if (b[j]==s) ok=1 }
			}
			if (ok && uri!="") { print uri; exit } }' "$f"
	done
}

key=$(printf '%s %s %s\n' "$SUITE" "$BASE" "$EXTRA" | sha256sum | cut -c1-16)
dir=$CACHE/$key
if [ -f "$dir/.complete" ]; then
	echo "$dir/rootfs"
	exit 0
fi

url=$(mirror | head -n1)
if [ -z "$url" ]; then
	echo "rootfs.sh: no apt source for $SUITE in /etc/apt/sources.list{,.d/}" >&2
	exit 1
fi
echo "rootfs.sh: debootstrap $SUITE from $url into $dir (first run only)" >&2
mkdir -p "$dir"
log=$dir/build.log
fail() {
	tail -n 40 "$log" >&2
	echo "rootfs.sh: building the rootfs failed; full log in $log" >&2
	exit 1
}
# Each stage leaves a marker, so an interrupted build resumes where it stopped.
if [ ! -f "$dir/.debootstrapped" ]; then
	rm -rf "$dir/rootfs"
	debootstrap --variant=minbase --include="$BASE" "$SUITE" "$dir/rootfs" "$url" >"$log" 2>&1 || fail
	touch "$dir/.debootstrapped"
fi
# Run apt inside the tree (not booted): nspawn provides /proc, /dev and the
# host's network and resolv.conf.
systemd-nspawn -q -D "$dir/rootfs" --register=no --keep-unit --resolv-conf=copy-host \
	env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $EXTRA >>"$log" 2>&1 || fail
# The apt lists inside are not needed; keep the cached tree small.
rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
touch "$dir/.complete"
echo "$dir/rootfs"
