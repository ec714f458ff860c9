#!/usr/bin/env bash
# Benchmark of `stowage run refresh` against what an administrator would
# script (a skopeo inspect loop) and the floor (raw parallel HEADs with curl),
# on N tagged images in a local docker-registry, all traffic on 127.0.0.1.
# Writes test/bench/results/refresh.txt.
# The newer-version case (50 repositories, refresh.newer = "minor", against an
# emulation of Diun's pattern) is test/bench/refresh_newer.sh.
set -euo pipefail

N=${REFRESH_BENCH_N:-500}
BIN=${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/registry.bash"
OUT="$HERE/results/refresh.txt"
for tool in docker-registry podman skopeo curl sha256sum gzip tar; do
  command -v "$tool" >/dev/null || { echo "refresh bench: $tool missing (make deps)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/stowage-bench-refresh.XXXXXX)
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  # vfs has no mounts: removing the directory removes the store.
  rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

# --- N distinct images: one shared layer, one config per tag ------------------
# Written straight into the registry's filesystem storage (distribution 2.x
# layout) before it starts: thousands of HTTP uploads would take minutes.
bench_layer
REPO=$V2/repositories/bench/app
# Only shell builtins per tag, and one mkdir/sha256sum per pass: forks are
# what make this slow on a loaded machine.
t0=$(now)
mkdir -p "$REPO/_layers/sha256/$LAYER_HEX"
printf 'sha256:%s' "$LAYER_HEX" >"$REPO/_layers/sha256/$LAYER_HEX/link"
for ((i = 1; i <= N; i++)); do
  printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"%s"}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$i" "$DIFF_ID" >"$W/gen/cfg/$i"
done
declare -A CFG_HEX
dirs=()
while read -r hex i; do
  CFG_HEX[$i]=$hex
  dirs+=("$V2/blobs/sha256/${hex:0:2}/$hex" "$REPO/_layers/sha256/$hex")
done < <(cd "$W/gen/cfg" && sha256sum -- *)
mkdir -p "${dirs[@]}"
for i in "${!CFG_HEX[@]}"; do
  hex=${CFG_HEX[$i]}
  IFS= read -r cfg <"$W/gen/cfg/$i" || true
  printf '%s' "$cfg" >"$V2/blobs/sha256/${hex:0:2}/$hex/data"
  printf 'sha256:%s' "$hex" >"$REPO/_layers/sha256/$hex/link"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%d,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%d,"digest":"sha256:%s"}]}' \
    "${#cfg}" "$hex" "$LAYER_SIZE" "$LAYER_HEX" >"$W/gen/man/$i"
done
declare -A MAN_HEX
dirs=()
while read -r hex i; do
  MAN_HEX[$i]=$hex
  dirs+=("$V2/blobs/sha256/${hex:0:2}/$hex" "$REPO/_manifests/revisions/sha256/$hex"
    "$REPO/_manifests/tags/t$i/current" "$REPO/_manifests/tags/t$i/index/sha256/$hex")
done < <(cd "$W/gen/man" && sha256sum -- *)
mkdir -p "${dirs[@]}"
for i in "${!MAN_HEX[@]}"; do
  hex=${MAN_HEX[$i]}
  IFS= read -r man <"$W/gen/man/$i" || true
  printf '%s' "$man" >"$V2/blobs/sha256/${hex:0:2}/$hex/data"
  for l in "$REPO/_manifests/revisions/sha256/$hex/link" "$REPO/_manifests/tags/t$i/current/link" \
    "$REPO/_manifests/tags/t$i/index/sha256/$hex/link"; do printf 'sha256:%s' "$hex" >"$l"; done
done
t1=$(now)
echo "generated $N tags in $(elapsed "$t0" "$t1")s"

# --- registry on a free loopback port ---------------------------------------
bench_registry "  delete:
    enabled: true"

# --- pull them into a private store ------------------------------------------
bench_store
t0=$(now)
podman "${STORE[@]}" pull -q --all-tags "$ADDR/bench/app" >/dev/null
t1=$(now)
echo "pulled $N tags in $(elapsed "$t0" "$t1")s"
REFS=()
for i in $(seq 1 "$N"); do REFS+=("$ADDR/bench/app:t$i"); done

# --- stowage ------------------------------------------------------------------
# Timings are the best of $REPEAT runs (the machine may be shared); a warm-up
# run first creates the history DB. The default policy with rate = 0: this
# measures raw speed against peers that do not pace, and the default pacing
# (rate = 10 per registry host) would make any run of N tags last N/10 s.
cat >"$W/policy.toml" <<TOML
version = 1
[refresh]
rate = 0
TOML
SARGS=("${STORE[@]}" --policy "$W/policy.toml" --state-dir "$W/state")
REPEAT=${REFRESH_BENCH_REPEAT:-3}
best() { # current candidate
  if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi
}
"$BIN" "${SARGS[@]}" run refresh --format json >/dev/null
gets_before=$(grep -c '"GET /v2/bench/app/manifests/' "$W/registry.log" || true)
T_STOWAGE=
for _ in $(seq "$REPEAT"); do
  t0=$(now)
  "$BIN" "${SARGS[@]}" run refresh --format json >"$W/refresh.json"
  t1=$(now)
  T_STOWAGE=$(best "$T_STOWAGE" "$(elapsed "$t0" "$t1")")
done
gets_after=$(grep -c '"GET /v2/bench/app/manifests/' "$W/registry.log" || true)
LOG_GETS=$((gets_after - gets_before))
read -r CHECKED CURRENT HEADS GETS < <(jq -r '[.metrics.checked, .metrics.current, .head_requests, .get_requests] | @tsv' "$W/refresh.json")
# The policy's per_registry default; the floor runs at the same parallelism.
PER_REGISTRY=4

# --- skopeo loop (what an administrator would script) -------------------------
t0=$(now)
for r in "${REFS[@]}"; do skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$r" >/dev/null; done
t1=$(now)
T_SKOPEO=$(elapsed "$t0" "$t1")

# --- floor: raw parallel HEADs with curl --------------------------------------
ACCEPT='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'
: >"$W/curl.cfg"
for i in $(seq 1 "$N"); do printf 'url = "http://%s/v2/bench/app/manifests/t%d"\noutput = "/dev/null"\n' "$ADDR" "$i" >>"$W/curl.cfg"; done
floor() { # parallelism
  local t0 t1 b=
  for _ in $(seq "$REPEAT"); do
    t0=$(now)
    curl -s --head --parallel --parallel-max "$1" -H "$ACCEPT" -K "$W/curl.cfg" >/dev/null 2>&1
    t1=$(now)
    b=$(best "$b" "$(elapsed "$t0" "$t1")")
  done
  echo "$b"
}
T_FLOOR=$(floor "$PER_REGISTRY")
T_FLOOR50=$(floor 50)

R_SKOPEO=$(echo "$T_SKOPEO / $T_STOWAGE" | bc -l)
R_FLOOR=$(echo "$T_STOWAGE / $T_FLOOR" | bc -l)
R_FLOOR50=$(echo "$T_STOWAGE / $T_FLOOR50" | bc -l)
{
  echo "refresh benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), $N tags on one local docker-registry ($(nproc) CPUs)"
  echo "(stowage and curl: best of $REPEAT runs; skopeo: one pass)"
  echo "policy: the default with [refresh] rate = 0 (unpaced; raw speed; the default rate = 10 would pace $N tags to $((N / 10)) s)"
  printf 'stowage run refresh            %8.3fs  (%s checked, %s current, %s HEAD, %s GET; registry log: %s manifest GETs in %s runs)\n' "$T_STOWAGE" "$CHECKED" "$CURRENT" "$HEADS" "$GETS" "$LOG_GETS" "$REPEAT"
  printf 'skopeo inspect loop            %8.3fs\n' "$T_SKOPEO"
  printf 'curl --parallel HEAD (max %2d)  %8.3fs  (floor at stowage'"'"'s per_registry concurrency)\n' "$PER_REGISTRY" "$T_FLOOR"
  printf 'curl --parallel HEAD (max 50)  %8.3fs\n' "$T_FLOOR50"
  printf 'speed-up vs skopeo loop        %8.1fx  (target >= 20x)\n' "$R_SKOPEO"
  printf 'stowage / HEAD floor           %8.2fx  (target <= 1.5x)\n' "$R_FLOOR"
  printf 'stowage / HEAD floor (max 50)  %8.2fx\n' "$R_FLOOR50"
} | tee "$OUT"
