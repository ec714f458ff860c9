#!/bin/bash
# rootfs.sh SUITE — print the path of a cached, debootstrapped Debian rootfs
# (bookworm, trixie or sid) with systemd, D-Bus, podman and a virtual desktop
# (Xvfb, dunst) for the end-to-end test, building it on first use.
#
# podman goes in the way users install it: `apt-get install podman`, its
# Recommends included (on trixie that brings the containers-storage package
# and its storage.conf); podman.socket stays as Debian ships it (disabled).
# The cache key is the suite, the package lists and this script's recipe
# version, so changing any of them builds a fresh tree. The mirror is read
# from the host's apt sources at run time (never hard-coded): the URI that
# serves the host's own Debian suite serves the others too.
set -euo pipefail

SUITE=${1:-bookworm}
case $SUITE in
bookworm | trixie | sid) ;;
*)
	echo "rootfs.sh: unknown suite $SUITE (bookworm, trixie or sid)" >&2
	exit 2
	;;
esac
CACHE=${STOWAGE_E2E_CACHE:-/var/cache/stowage-e2e}
RECIPE=2
# BASE goes in with debootstrap; the rest with apt inside the tree, so that
# apt resolves virtual dependencies and Recommends as on a user's machine.
BASE=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,polkitd,ca-certificates,procps,iproute2,less
USER_PKGS="podman"
# A desktop for the notification checks (run.sh, desktop.sh): a virtual X
# server, Debian's notification daemon, xwd for screenshots, and xdg-open
# with file(1) (its MIME lookup outside a known desktop) for the "Show
# report" action, without their Recommends.
DESKTOP_PKGS="xvfb dunst x11-apps fonts-dejavu-core xdg-utils file"
# What the test itself uses inside (not what stowage needs): none beyond BASE
# and DESKTOP_PKGS, except on one system: Debian's Prometheus and node exporter, for the
# scrape of stowage's textfile metrics (run.sh). Installed without their
# Recommends (the collectors package's timers would write other .prom files
# and start smartd), and their units disabled in the tree: the container
# shares the host's network, where the packaged listeners on :9090 and
# :9100 must not appear; run.sh starts them on ports of its own.
# EXTRA_PKGS and EXTRA_RECIPE enter the cache key only where they are set,
# so the other suites keep their cached trees.
EXTRA_PKGS=
EXTRA_UNITS=
if [ "$SUITE" = bookworm ]; then
	EXTRA_PKGS="prometheus prometheus-node-exporter"
	EXTRA_UNITS="prometheus.service prometheus-node-exporter.service"
fi
EXTRA_RECIPE=1
APT_OPTS=()
if [ "$SUITE" = sid ]; then
	# The mirror's sid InRelease can be past its Valid-Until date. Accept
	# that for sid only; signatures are still verified.
	APT_OPTS=(-o Acquire::Check-Valid-Until=false)
fi

# mirror prints the first apt source URI of the host's Debian archive (the
# one that serves the host's own release, not -security/-updates), from
# one-line .list or deb822 .sources files.
mirror() {
	local f host_suite
	host_suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v s="$host_suite" '$1=="deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1)==s) { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$host_suite" 'BEGIN{RS=""; FS="\n"} {
			uri=""; ok=0
			for (i=1;i<=NF;i++) {
				if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri=a[2] }
				if ($i ~ /^Suites:/) { n=split($i, b, /[ \t]+/); for (j=2;j<=n;j++) if (b[j]==s) ok=1 }
			}
			if (ok && uri!="") { print uri; exit } }' "$f"
	done
}

keytext="$RECIPE $SUITE $BASE $USER_PKGS desktop $DESKTOP_PKGS"
[ -n "$EXTRA_PKGS" ] && keytext="$keytext extra$EXTRA_RECIPE $EXTRA_PKGS"
key=$(printf '%s\n' "$keytext" | sha256sum | cut -c1-16)
dir=$CACHE/$SUITE-$key
if [ -f "$dir/.complete" ]; then
	echo "$dir/rootfs"
	exit 0
fi

url=$(mirror | head -n1)
if [ -z "$url" ]; then
	echo "rootfs.sh: no Debian apt source in /etc/apt/sources.list{,.d/}" >&2
	exit 1
fi
echo "rootfs.sh: debootstrap $SUITE from $url into $dir (first run only)" >&2
mkdir -p "$dir"
log=$dir/build.log
fail() {
	tail -n 40 "$log" >&2
	echo "rootfs.sh: building the $SUITE rootfs failed; full log in $log" >&2
	exit 1
}
# Each stage leaves a marker, so an interrupted build resumes where it stopped.
if [ ! -f "$dir/.debootstrapped" ]; then
	rm -rf "$dir/rootfs"
	# The host's keyring verifies every suite the mirror serves.
	debootstrap --variant=minbase --include="$BASE" \
		--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$SUITE" "$dir/rootfs" "$url" >"$log" 2>&1 || fail
	touch "$dir/.debootstrapped"
fi
# Run apt inside the tree (not booted): nspawn provides /proc, /dev and the
# host's network and resolv.conf.
if [ ! -f "$dir/.installed" ]; then
	printf 'deb %s %s main\n' "$url" "$SUITE" >"$dir/rootfs/etc/apt/sources.list"
	in_tree() {
		SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$dir/rootfs" --register=no \
			--keep-unit --resolv-conf=copy-host env DEBIAN_FRONTEND=noninteractive "$@"
	}
	in_tree apt-get "${APT_OPTS[@]}" update >>"$log" 2>&1 || fail
	in_tree apt-get "${APT_OPTS[@]}" install -y $USER_PKGS >>"$log" 2>&1 || fail
	in_tree apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $DESKTOP_PKGS >>"$log" 2>&1 || fail
	if [ -n "$EXTRA_PKGS" ]; then
		in_tree apt-get "${APT_OPTS[@]}" install -y --no-install-recommends $EXTRA_PKGS >>"$log" 2>&1 || fail
		in_tree systemctl disable $EXTRA_UNITS >>"$log" 2>&1 || fail
	fi
	touch "$dir/.installed"
fi
# The package cache and lists are not needed; keep the cached tree small.
rm -rf "$dir/rootfs/var/cache/apt/archives/"*.deb "$dir/rootfs/var/lib/apt/lists/"*
touch "$dir/.complete"
echo "$dir/rootfs"
