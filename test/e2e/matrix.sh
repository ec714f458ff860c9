#!/bin/bash
# matrix.sh DEB — the end-to-end test on every system of the field matrix,
# side by side: run.sh DEB SUITE for each of $STOWAGE_E2E_SYSTEMS (default
# "bookworm trixie sid"), each in its own systemd-nspawn container with its
# own registry. Prints each system's log, then a system × check table and
# the total "N passed, N failed"; exits non-zero on any failure.
# The whole script is one compound command: bash parses it completely before
# running it, so editing the file during a run cannot derail that run.
{
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
deb=${1:-}
[ -n "$deb" ] && [ -f "$deb" ] || { echo "usage: $0 STOWAGE.deb" >&2; exit 2; }
deb=$(readlink -f "$deb")
read -r -a systems <<<"${STOWAGE_E2E_SYSTEMS:-bookworm trixie sid}"
out=$(mktemp -d /var/tmp/stowage-e2e-matrix.XXXXXX)
trap 'rm -rf "$out"' EXIT

start=$(date +%s)
# The rootfs builds (first run only) download and unpack: side by side too.
pids=()
for s in "${systems[@]}"; do
	bash "$here/rootfs.sh" "$s" >"$out/$s.rootfs" 2>&1 &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done # failures surface in run.sh

pids=()
for s in "${systems[@]}"; do
	STOWAGE_E2E_INFO="$out/$s.info" bash "$here/run.sh" "$deb" "$s" >"$out/$s.log" 2>&1 &
	pids+=($!)
	sleep 5 # stagger the boots a little on a small machine
done
rc=0
for i in "${!systems[@]}"; do
	wait "${pids[$i]}" || rc=1
done
for s in "${systems[@]}"; do
	echo "=================== $s ==================="
	cat "$out/$s.rootfs" 2>/dev/null
	cat "$out/$s.log"
done

echo
echo "=================== field matrix ($(($(date +%s) - start)) s) ==================="
for s in "${systems[@]}"; do
	IFS='|' read -r name deb_v podman_v systemd_v db ev <"$out/$s.info" 2>/dev/null &&
		printf '%-9s Debian %-8s podman %-6s systemd %-4s database %-7s events %s\n' "$name" "$deb_v" "$podman_v" "$systemd_v" "$db" "$ev"
done
# One row per check, one column per system.
printf '\n%-6s' ""
for s in "${systems[@]}"; do printf ' %-9s' "$s"; done
echo " check"
for s in "${systems[@]}"; do
	sed -n "s/^\(PASS\|FAIL\): $s: /\1|/p" "$out/$s.log" | awk -F'|' -v s="$s" '{print s "|" $1 "|" $2}'
done | awk -F'|' -v list="${systems[*]}" '
	BEGIN { n = split(list, sys, " ") }
	{ key = $3; if (!(key in seen)) { seen[key] = 1; order[++m] = key }; res[key, $1] = $2 }
	END {
		for (i = 1; i <= m; i++) {
			line = sprintf("%-6s", "")
			for (j = 1; j <= n; j++) { r = res[order[i], sys[j]]; line = line sprintf(" %-9s", r == "" ? "-" : r) }
			print line " " order[i]
		}
	}'
passed=0
failed=0
for s in "${systems[@]}"; do
	p=$(grep -c "^PASS: $s: " "$out/$s.log")
	f=$(grep -c "^FAIL: $s: " "$out/$s.log")
	echo "$s: $p passed, $f failed"
	# A system whose run ended without its summary line failed somewhere.
	grep -Eq "^$s: [0-9]+ passed, [0-9]+ failed$" "$out/$s.log" || { echo "$s: no summary line"; f=$((f + 1)); }
	passed=$((passed + p))
	failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$rc" = 0 ]
exit
}
