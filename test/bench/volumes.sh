#!/usr/bin/env bash
# Benchmark: `stowage run volumes` against `podman volume prune -f`, removing
# the same number of dangling anonymous volumes from a private store in the
# same run. Two stowage modes: with podman's API socket already running
# ([volumes] podman_socket), and with none (stowage starts and stops a
# private `podman system service`, its default when no socket answers).
# Median wall time of $REPS rounds each.
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/volumes.sh   (as root; run by make bench)
set -euo pipefail
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
REPS=${VOLUMES_BENCH_REPS:-5}
N=${VOLUMES_BENCH_N:-50}
here=$(cd "$(dirname "$0")" && pwd)
out="$here/results/volumes.txt"
mkdir -p "$here/results"
for t in podman curl awk; do command -v "$t" >/dev/null || { echo "volumes.sh: $t missing (make deps)" >&2; exit 1; }; done

# podman refuses a runroot longer than 50 characters: keep the path short.
work=$(mktemp -d /tmp/stwg-vol.XXXXXX)
svc=
cleanup() {
	[ -n "$svc" ] && kill "$svc" 2>/dev/null && wait "$svc" 2>/dev/null
	podman "${P[@]}" rm -af >/dev/null 2>&1 || true
	podman "${P[@]}" volume rm -af >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# A private store, tmp dir and file locks (the shared defaults collide with
# other podman users on the machine).
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s/events.log"\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' "$work" "$work" >"$work/containers.conf"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$work" "$work" >"$work/storage.conf"
printf 'unqualified-search-registries = []\n' >"$work/registries.conf"
export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_REGISTRIES_CONF="$work/registries.conf"
P=(--root "$work/root" --runroot "$work/run" --storage-driver vfs)
printf 'version = 1\n[volumes]\nmin_age = "0s"\n' >"$work/private.toml"
printf 'version = 1\n[volumes]\nmin_age = "0s"\npodman_socket = "%s/api.sock"\n' "$work" >"$work/socket.toml"

mkdir -p "$work/rootfs" && echo hi >"$work/rootfs/hello"
tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
podman "${P[@]}" import -q "$work/rootfs.tar" localhost/stwg-bench/vol:1 >/dev/null
vflags=()
for i in $(seq "$N"); do vflags+=(-v "/d$i"); done

# make_dangling: N anonymous volumes whose container is gone.
make_dangling() {
	podman "${P[@]}" create --name holder "${vflags[@]}" localhost/stwg-bench/vol:1 /hello >/dev/null
	podman "${P[@]}" rm holder >/dev/null
	local n
	n=$(podman "${P[@]}" volume ls -q --filter dangling=true | wc -l)
	[ "$n" -eq "$N" ] || { echo "volumes.sh: expected $N dangling volumes, got $n" >&2; exit 1; }
}
check_empty() {
	local n
	n=$(podman "${P[@]}" volume ls -q | wc -l)
	[ "$n" -eq 0 ] || { echo "volumes.sh: $1 left $n volumes" >&2; exit 1; }
}
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

: >"$work/podman.txt" && : >"$work/private.txt" && : >"$work/socket.txt"
for r in $(seq "$REPS"); do
	make_dangling
	ms timeout 300 podman "${P[@]}" volume prune -f >>"$work/podman.txt"
	check_empty "podman volume prune"

	make_dangling
	ms timeout 300 "$STOWAGE_BIN" "${P[@]}" --log-level warn --policy "$work/private.toml" run volumes --format json >>"$work/private.txt"
	check_empty "stowage run volumes (private service)"

	podman "${P[@]}" system service --time=0 "unix://$work/api.sock" >"$work/svc.log" 2>&1 &
	svc=$!
	for _ in $(seq 300); do curl -sf --unix-socket "$work/api.sock" http://d/_ping >/dev/null && break; sleep 0.1; done
	make_dangling
	ms timeout 300 "$STOWAGE_BIN" "${P[@]}" --log-level warn --policy "$work/socket.toml" run volumes --format json >>"$work/socket.txt"
	check_empty "stowage run volumes (running socket)"
	if [ "$r" -eq "$REPS" ]; then
		# One untimed round with debug logs: where stowage's time goes.
		make_dangling
		"$STOWAGE_BIN" "${P[@]}" --log-level debug --policy "$work/socket.toml" run volumes --format json 2>"$work/phases.log" >/dev/null
		check_empty "stowage run volumes (profile round)"
	fi
	kill "$svc" && wait "$svc" 2>/dev/null || true
	svc=
done

p=$(median <"$work/podman.txt") s1=$(median <"$work/socket.txt") s2=$(median <"$work/private.txt")
ratio() { awk -v s="$1" -v p="$2" 'BEGIN { if (p > 0) printf "%.2f", s / p; else print "-" }'; }
{
	echo "# stowage run volumes vs podman volume prune -f — $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# $N dangling anonymous volumes removed per round, median wall ms of $REPS rounds; $(podman --version)"
	printf '%-40s %10s %8s\n' mode ms ratio
	printf '%-40s %10s %8s\n' "podman volume prune -f" "$p" "1.00"
	printf '%-40s %10s %8s\n' "stowage, podman socket running" "$s1" "$(ratio "$s1" "$p")"
	printf '%-40s %10s %8s\n' "stowage, private service started" "$s2" "$(ratio "$s2" "$p")"
	# Where stowage's time goes (an extra untimed socket round with debug
	# logs; the rest of its wall time is process start, ping and exit).
	took() { grep -o "msg=\"$1\".*took=[^ ]*" "$work/phases.log" | sed 's/.*took=//' | tail -1; }
	echo "# stowage phases, socket running: snapshot (3 concurrent reads) $(took "volume snapshot"), apply (deletes) $(took "volumes applied")"
} | tee "$out"
