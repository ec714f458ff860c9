#!/usr/bin/env bash
# Prune benchmarks (run by `make bench` with STOWAGE_BIN set):
#  1. planning: BenchmarkPlan on synthetic snapshots up to 10,000 images /
#     30,000 layers / 2,000 containers (time and allocations per size, to show
#     linear growth);
#  2. removal: the same N images removed by `stowage run prune` and by
#     `podman rmi` on two fresh copies of one store, in this run; the ratio
#     stowage/podman (target <= 1.0), freed bytes vs the plan, and vs the
#     allocated bytes the graphroot really gave back (test/bench/allocbytes).
# Only local files; no network.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAGS="containers_image_openpgp exclude_graphdriver_btrfs"
OUT=test/bench/results/prune.txt
N=${PRUNE_BENCH_IMAGES:-200}
mkdir -p test/bench/results
BIN=${STOWAGE_BIN:-}
WORK=$(mktemp -d /tmp/stwg-prune-bench.XXXXXX)
cleanup() {
  for s in A B S; do
    [ -d "$WORK/$s" ] && podman --root "$WORK/$s/root" --runroot "$WORK/$s/run" --storage-driver vfs system reset -f >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
if [ -z "$BIN" ]; then
  BIN=$WORK/stowage
  go build -tags "$TAGS" -o "$BIN" ./cmd/stowage
fi
# The truth for freed bytes: allocated blocks, each inode once (not du, whose
# directory sizes depend on the coreutils version).
go build -tags "$TAGS" -o "$WORK/allocbytes" ./test/bench/allocbytes
alloc() { "$WORK/allocbytes" "$1" | cut -d' ' -f1; }

{
  echo "# stowage prune benchmarks — $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs"
  echo
  echo "## 1. planning (go test -bench BenchmarkPlan ./jobs/prune)"
} >"$OUT"
go test -tags "$TAGS" -run '^$' -bench BenchmarkPlan -benchmem -benchtime 5x ./jobs/prune | tee "$WORK/plan.txt" | grep Benchmark >>"$OUT"
awk '/BenchmarkPlan/ { split($1, a, "/"); n = a[2]; sub("images=", "", n); printf "  %s images: %.3f s, %.1f ns/image, %d allocs = %.2f allocs/image\n", n, $3 / 1e9, $3 / n, $7, $7 / n }' "$WORK/plan.txt" >>"$OUT"

# 2. removal: one store with N single-layer images, two copies.
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\ntmp_dir = "%s/libpod-tmp"\n' "$WORK" >"$CONTAINERS_CONF"
echo 'unqualified-search-registries = []' >"$CONTAINERS_REGISTRIES_CONF"
S="--root $WORK/S/root --runroot $WORK/S/run --storage-driver vfs"
# One docker-archive with N images (one random 64 KiB layer each), loaded at
# once: far faster than N imports.
D=$WORK/archive; mkdir -p "$D"
entries=()
for i in $(seq 1 "$N"); do
  mkdir -p "$D/l$i"
  head -c 65536 /dev/urandom >"$D/l$i/f"
  tar -C "$D/l$i" -cf "$D/l$i/layer.tar" f && rm "$D/l$i/f"
  diff=$(sha256sum "$D/l$i/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","created":"2020-01-01T00:00:00Z","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" >"$D/c.json"
  cid=$(sha256sum "$D/c.json" | cut -d' ' -f1)
  mv "$D/c.json" "$D/$cid.json"
  entries+=("{\"Config\":\"$cid.json\",\"RepoTags\":[\"localhost/bench/img$i:1\"],\"Layers\":[\"l$i/layer.tar\"]}")
done
(IFS=,; echo "[${entries[*]}]") >"$D/manifest.json"
tar -C "$D" -cf "$WORK/all.tar" .
podman $S load -q -i "$WORK/all.tar" >/dev/null
podman $S images -q --no-trunc | sort -u >"$WORK/ids"
[ "$(wc -l <"$WORK/ids")" -ge "$N" ] || { echo "store has fewer than $N images" >&2; exit 1; }
# Fresh copies; podman's own database records its paths, so drop it (the
# images live in containers/storage; podman recreates its database).
for s in A B; do cp -a "$WORK/S" "$WORK/$s"; rm -rf "$WORK/$s/root/libpod"; done
A="--root $WORK/A/root --runroot $WORK/A/run --storage-driver vfs"
B="--root $WORK/B/root --runroot $WORK/B/run --storage-driver vfs"
printf 'version = 1\n[prune]\nmin_free = "0"\nmin_age = "0"\nkeep_last = 0\nunused_for = "1ns"\n' >"$WORK/policy.toml"
mkdir -p "$WORK/quadlet"
SARGS=(--policy "$WORK/policy.toml" --state-dir "$WORK/state" run prune --format json --quadlet-dir "$WORK/quadlet")

"$BIN" $A "${SARGS[@]}" --dry-run >"$WORK/plan.json"
planned=$(jq .planned_free_bytes "$WORK/plan.json")
nplan=$(jq '[.removed[] | select(.layer | not)] | length' "$WORK/plan.json")
du_a0=$(alloc "$WORK/A/root")
t0=$(date +%s%N)
"$BIN" $A "${SARGS[@]}" >"$WORK/apply.json"
t1=$(date +%s%N)
xargs podman $B rmi <"$WORK/ids" >/dev/null
t2=$(date +%s%N)
du_a1=$(alloc "$WORK/A/root")
freed=$(jq .freed_bytes "$WORK/apply.json")
nrem=$(jq '[.removed[] | select(.layer | not)] | length' "$WORK/apply.json")
left_a=$(podman $A images -q | wc -l)
left_b=$(podman $B images -q | wc -l)
ts=$(( (t1 - t0) / 1000000 )); tp=$(( (t2 - t1) / 1000000 ))
{
  echo
  echo "## 2. removal of the same $nplan images (vfs store, fresh copies)"
  echo "  stowage run prune: ${ts} ms (removed $nrem, $left_a images left)"
  echo "  podman rmi:        ${tp} ms ($left_b images left)"
  awk -v s="$ts" -v p="$tp" 'BEGIN { printf "  ratio stowage/podman = %.2f (target <= 1.00)\n", s / p }'
  echo "  planned_free_bytes = $planned, freed_bytes = $freed ($( [ "$planned" = "$freed" ] && echo equal || echo DIFFERENT))"
  gone=$((du_a0 - du_a1))
  awk -v f="$freed" -v g="$gone" 'BEGIN { d = f - g; t = (g / 100 > 65536) ? g / 100 : 65536; printf "  graphroot gave back %d allocated bytes; freed_bytes off by %d (%.2f%%): %s\n", g, d, (g > 0 ? 100 * d / g : 0), ((d <= t && d >= -t) ? "within 1%/64 KiB" : "OFF") }'

} >>"$OUT"
cat "$OUT"
