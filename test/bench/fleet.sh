#!/usr/bin/env bash
# Benchmark (simulated): registry load of a fleet. test/bench/fleetsim takes
# $FLEET_HOSTS hosts x $FLEET_REFS references on the default policy; each
# host's refresh start comes from the real scheduler (jitter, catch-up) on a
# fake clock, its requests from the real refresh planner, sent with the
# policy's concurrency, per_registry and [refresh] rate pacing at
# $FLEET_LATENCY per request (what-ifs: unpaced, rate = 0). It writes arrivals
# per second for a steady day and for the catch-up after a fleet-wide outage,
# the jitter sizing table of README's "Fleets", and a chart. Deterministic
# (seeded); no daemon, registry or network involved.
# Usage: bash test/bench/fleet.sh   (run by make bench)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$here/results"
command -v go >/dev/null || { echo "fleet.sh: go missing" >&2; exit 1; }
cd "$repo"
go run -tags "containers_image_openpgp exclude_graphdriver_btrfs" ./test/bench/fleetsim \
	-hosts "${FLEET_HOSTS:-10000}" -refs "${FLEET_REFS:-50}" -latency "${FLEET_LATENCY:-50ms}" \
	-boot-spread "${FLEET_BOOT_SPREAD:-5m}" -seed "${FLEET_SEED:-1}" \
	-txt "$here/results/fleet.txt" -png "$here/results/fleet.png"
