#!/usr/bin/env bash
# Benchmark: the stowage daemon against `podman system service`, measured the
# same way in the same run by test/bench/daemonbench: time from exec to
# READY=1 on NOTIFY_SOCKET, idle RSS (after serving one request and idling),
# and HTTP round trips on the unix socket (stowage GET /v1/status, podman
# GET /_ping) over a kept-alive connection and with a fresh connection per
# request (as each `stowage status` makes). Median of $REPS runs each.
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/daemon.sh   (as root; run by make bench)
set -euo pipefail
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
REPS=${DAEMON_BENCH_REPS:-5}
REQUESTS=${DAEMON_BENCH_REQUESTS:-2000}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/results/daemon.txt"
mkdir -p "$here/results"
for t in podman go awk; do command -v "$t" >/dev/null || { echo "daemon.sh: $t missing (make deps)" >&2; exit 1; }; done

# podman refuses a runroot longer than 50 characters: keep the path short.
work=$(mktemp -d /tmp/stwg-dmn.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
(cd "$repo" && go build -o "$work/daemonbench" ./test/bench/daemonbench)

# podman: a private store, tmp dir and file locks (the shared defaults
# collide with other podman users on the machine).
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s/events.log"\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' "$work" "$work" >"$work/containers.conf"
printf 'unqualified-search-registries = []\n' >"$work/registries.conf"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }

: >"$work/stowage.txt"
: >"$work/podman.txt"
for i in $(seq "$REPS"); do
	rm -rf "$work/s" && mkdir -p "$work/s"
	timeout 120 "$work/daemonbench" -socket "$work/s/ctl.sock" -path /v1/status -requests "$REQUESTS" -- \
		env XDG_RUNTIME_DIR="$work/s" "$STOWAGE_BIN" --user --state-dir "$work/s/state" --policy "$repo/etc/stowage/stowage.toml" \
		daemon --socket "$work/s/ctl.sock" >>"$work/stowage.txt"
	rm -rf "$work/p" && mkdir -p "$work/p"
	timeout 120 "$work/daemonbench" -socket "$work/p/api.sock" -path /_ping -requests "$REQUESTS" -- \
		env CONTAINERS_CONF="$work/containers.conf" CONTAINERS_REGISTRIES_CONF="$work/registries.conf" \
		podman --root "$work/p/root" --runroot "$work/p/run" --storage-driver vfs \
		system service --time=0 "unix://$work/p/api.sock" >>"$work/podman.txt"
done

stat() { field "$2" <"$work/$1.txt" | median; }
{
	echo "# stowage daemon vs podman system service — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# median of $REPS runs; round trips: $REQUESTS per run (GET /v1/status vs podman GET /_ping)"
	echo "# stowage $("$STOWAGE_BIN" --version | awk '{print $NF}'), $(podman --version)"
	printf '%-28s %12s %12s %8s\n' metric stowage podman ratio
	for m in ready_ms ready_cpu_ms rss_kib rss_anon_kib p50_us p99_us fresh_p50_us fresh_p99_us; do
		s=$(stat stowage "$m") p=$(stat podman "$m")
		printf '%-28s %12s %12s %8s\n' "$m" "$s" "$p" "$(awk -v s="$s" -v p="$p" 'BEGIN { if (p > 0) printf "%.2f", s / p; else print "-" }')"
	done
	s_rss=$(stat stowage rss_kib) s_ready=$(stat stowage ready_ms) s_p99=$(stat stowage fresh_p99_us) p_rss=$(stat podman rss_kib)
	echo "# targets: idle RSS <= 20 MiB and <= podman's: $(awk -v s="$s_rss" -v p="$p_rss" 'BEGIN { print (s <= 20480 && s <= p) ? "met" : "MISSED" }')," \
		"READY <= 100 ms: $(awk -v s="$s_ready" 'BEGIN { print (s <= 100) ? "met" : "MISSED" }')," \
		"status p99 <= 10 ms (fresh connection): $(awk -v s="$s_p99" 'BEGIN { print (s <= 10000) ? "met" : "MISSED" }')"
	echo "# raw runs (stowage):"; sed 's/^/#   /' "$work/stowage.txt"
	echo "# raw runs (podman):"; sed 's/^/#   /' "$work/podman.txt"
} >"$out"
cat "$out"
