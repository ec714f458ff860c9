#!/usr/bin/env bash
# Benchmark: bounded state. test/bench/stategen records $STATE_RUNS runs (the
# default schedule's mix: prune hourly, refresh and verify daily, volumes
# weekly, about a year) over an inventory of $STATE_REFS references through
# the real recording code with a fake clock, printing the state DB's size
# every 1,000 runs. Then test/bench/stateload starts `stowage daemon` on that
# DB (and, for comparison, on an empty one) and reads status, jobs, each
# job's last report and the run history $STATE_ROUNDS times, sampling the
# daemon's VmRSS. The documented bound is README's "State and its retention".
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/state.sh   (run by make bench)
set -euo pipefail
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
RUNS=${STATE_RUNS:-10000}
REFS=${STATE_REFS:-2000}
ROUNDS=${STATE_ROUNDS:-1000}
# The bound README documents for 2,000 references (see there for the sum).
BOUND_MIB=${STATE_BOUND_MIB:-170}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/results/state.txt"
mkdir -p "$here/results"
for t in go awk dbus-run-session; do command -v "$t" >/dev/null || { echo "state.sh: $t missing (make deps)" >&2; exit 1; }; done

work=$(mktemp -d /tmp/stwg-state.XXXXXX)
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
tags="containers_image_openpgp exclude_graphdriver_btrfs"
(cd "$repo" && go build -tags "$tags" -o "$work/stategen" ./test/bench/stategen && go build -o "$work/stateload" ./test/bench/stateload)

# No scheduled run may start while the daemon is measured: every job is due
# on 1 January only, after its last recorded run.
cat >"$work/policy.toml" <<'EOF'
version = 1
[schedule]
refresh = "0 0 1 1 *"
verify = "0 0 1 1 *"
prune = "0 0 1 1 *"
volumes = "0 0 1 1 *"
[notify]
desktop = false
EOF

t0=$(date +%s)
dbus-run-session -- "$work/stategen" -dir "$work/state" -runs "$RUNS" -refs "$REFS" -every 1000 >"$work/gen.txt" 2>"$work/gen.err" ||
	{ cat "$work/gen.err" >&2; exit 1; }
gen_s=$(($(date +%s) - t0))

load() { # load STATE_DIR [-empty]: one stateload line
	rm -rf "$work/s" && mkdir -p "$work/s"
	timeout 900 "$work/stateload" -socket "$work/s/ctl.sock" -rounds "$ROUNDS" ${2:-} -- \
		env XDG_RUNTIME_DIR="$work/s" "$STOWAGE_BIN" --user --state-dir "$1" --policy "$work/policy.toml" \
		daemon --socket "$work/s/ctl.sock"
}
full=$(load "$work/state")
mkdir -p "$work/empty"
empty=$(load "$work/empty" -empty)

field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
last=$(grep '^runs=' "$work/gen.txt" | tail -1)
db_last=$(field db_bytes <<<"$last")
db_max=$(grep '^runs=' "$work/gen.txt" | field db_bytes | sort -n | tail -1)
{
	echo "# bounded state — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); stowage $("$STOWAGE_BIN" --version | awk '{print $NF}')"
	echo "# $RUNS runs simulated (prune hourly, refresh+verify daily, volumes weekly; fake clock) over $REFS references, in ${gen_s} s"
	grep '^#' "$work/gen.txt" | sed 's/^# */# generator: /'
	printf '%-7s %5s %9s %10s %10s %8s %8s %8s %8s %8s %9s\n' runs day db_mib inuse_mib free_pages runs_mib hist_mib notify_mib lastuse_mib verify_mib gen_rss_mib
	grep '^runs=' "$work/gen.txt" | while read -r l; do
		printf '%-7s %5s %9s %10s %10s %8s %8s %8s %8s %8s %9s\n' "$(field runs <<<"$l")" "$(field day <<<"$l")" \
			"$(mib "$(field db_bytes <<<"$l")")" "$(mib "$(field inuse_bytes <<<"$l")")" "$(field free_pages <<<"$l")" \
			"$(mib "$(field bucket_daemon_runs <<<"$l")")" "$(mib "$(field bucket_refresh_history <<<"$l")")" \
			"$(mib "$(field bucket_notify <<<"$l")")" "$(mib "$(field bucket_lastuse <<<"$l")")" \
			"$(mib "$(field bucket_verify <<<"$l")")" "$(mib "$(($(field rss_kib <<<"$l") * 1024))")"
	done
	echo "# documented bound (README, State and its retention): ${BOUND_MIB} MiB for $REFS references;" \
		"largest file $(mib "$db_max") MiB: $(awk -v b="$db_max" -v m="$BOUND_MIB" 'BEGIN { print (b <= m * 1048576) ? "met" : "MISSED" }')"
	echo "# daemon RSS while serving $ROUNDS rounds of GET /v1/status, /v1/jobs, /v1/jobs/JOB/last, /v1/runs (KiB):"
	printf '%-10s %9s %9s %9s %9s %9s %10s\n' state ready first last max idle served_mib
	for n in full empty; do
		l=${!n}
		printf '%-10s %9s %9s %9s %9s %9s %10s\n' "$n" "$(field rss_ready_kib <<<"$l")" "$(field rss_first_kib <<<"$l")" \
			"$(field rss_last_kib <<<"$l")" "$(field rss_max_kib <<<"$l")" "$(field rss_idle_kib <<<"$l")" "$(field served_mib <<<"$l")"
	done
	echo "# raw (generator):"; grep '^runs=' "$work/gen.txt" | sed 's/^/#   /'
	echo "# raw (daemon, full DB):  $full"
	echo "# raw (daemon, empty DB): $empty"
} >"$out"
cat "$out"
