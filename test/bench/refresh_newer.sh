#!/usr/bin/env bash
# Refresh benchmark, newer-version case: R repositories of T version-like
# tags each (default 50 × 10 = 500 tags, all pulled), refresh.newer = "minor".
# Side by side, all against one local docker-registry on 127.0.0.1, every
# request counted in the registry's own access log:
#   - stowage run refresh (HEAD per tag + one tag listing per repository);
#   - an emulation of Diun's watch_repo request pattern (test/bench/diunemu:
#     a full tags/list walk per repository, then a /v2/ ping + HEAD per tag
#     listed, as containers/image's GetRepositoryTags and GetDigest do);
#   - the floor: T*R raw HEADs plus the R tag listings, with curl.
# Asserts that stowage's requests stay within 1.5x of the floor's.
# Writes test/bench/results/refresh_newer.txt.
set -euo pipefail

R=${NEWER_BENCH_REPOS:-50}
T=${NEWER_BENCH_TAGS:-10}
N=$((R * T))
BIN=${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/registry.bash"
REPO_ROOT=$(cd "$HERE/../.." && pwd)
OUT="$HERE/results/refresh_newer.txt"
for tool in docker-registry podman curl sha256sum gzip tar jq go bc; do
  command -v "$tool" >/dev/null || { echo "refresh_newer bench: $tool missing (make deps)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/stowage-bench-newer.XXXXXX)
REG_PID=
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

(cd "$REPO_ROOT" && go build -o "$W/diunemu" ./test/bench/diunemu)

# --- R repositories × T tags, written in the registry's storage layout ------
# One shared layer; one config per tag so every tag has its own digest.
# Tags per repository: 1.0 … 1.(T-2) and latest.
bench_layer
tagname() { if [ "$1" -eq $((T - 1)) ]; then echo latest; else echo "1.$1"; fi; }
REPOS=()
t0=$(now)
for ((r = 1; r <= R; r++)); do
  repo=$(printf 'bench/r%03d' "$r")
  REPOS+=("$repo")
  for ((j = 0; j < T; j++)); do
    printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"bench":"%s:%s"}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
      "$repo" "$j" "$DIFF_ID" >"$W/gen/cfg/$r-$j"
  done
done
declare -A CFG_HEX
while read -r hex f; do CFG_HEX[$f]=$hex; done < <(cd "$W/gen/cfg" && sha256sum -- *)
for f in "${!CFG_HEX[@]}"; do
  hex=${CFG_HEX[$f]}
  r=${f%-*}
  repo=$(printf 'bench/r%03d' "$r")
  mkdir -p "$V2/blobs/sha256/${hex:0:2}/$hex" "$V2/repositories/$repo/_layers/sha256/$hex" "$V2/repositories/$repo/_layers/sha256/$LAYER_HEX"
  IFS= read -r cfg <"$W/gen/cfg/$f" || true
  printf '%s' "$cfg" >"$V2/blobs/sha256/${hex:0:2}/$hex/data"
  printf 'sha256:%s' "$hex" >"$V2/repositories/$repo/_layers/sha256/$hex/link"
  printf 'sha256:%s' "$LAYER_HEX" >"$V2/repositories/$repo/_layers/sha256/$LAYER_HEX/link"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":%d,"digest":"sha256:%s"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":%d,"digest":"sha256:%s"}]}' \
    "${#cfg}" "$hex" "$LAYER_SIZE" "$LAYER_HEX" >"$W/gen/man/$f"
done
declare -A MAN_HEX
while read -r hex f; do MAN_HEX[$f]=$hex; done < <(cd "$W/gen/man" && sha256sum -- *)
for f in "${!MAN_HEX[@]}"; do
  hex=${MAN_HEX[$f]}
  r=${f%-*}
  j=${f#*-}
  repo=$(printf 'bench/r%03d' "$r")
  tag=$(tagname "$j")
  RP=$V2/repositories/$repo/_manifests
  mkdir -p "$V2/blobs/sha256/${hex:0:2}/$hex" "$RP/revisions/sha256/$hex" "$RP/tags/$tag/current" "$RP/tags/$tag/index/sha256/$hex"
  IFS= read -r man <"$W/gen/man/$f" || true
  printf '%s' "$man" >"$V2/blobs/sha256/${hex:0:2}/$hex/data"
  for l in "$RP/revisions/sha256/$hex/link" "$RP/tags/$tag/current/link" "$RP/tags/$tag/index/sha256/$hex/link"; do
    printf 'sha256:%s' "$hex" >"$l"
  done
done
echo "generated $N tags in $R repositories in $(elapsed "$t0" "$(now)")s"

# --- registry, access log on ---------------------------------------------------
bench_registry

# --- pull every tag into a private store -------------------------------------
bench_store
t0=$(now)
for repo in "${REPOS[@]}"; do podman "${STORE[@]}" pull -q --all-tags "$ADDR/$repo" >/dev/null; done
echo "pulled $N tags in $(elapsed "$t0" "$(now)")s"

# count KIND: requests of one kind in the registry's access log so far.
count() {
  case $1 in
    head) grep -c '"HEAD /v2/[^ ]*/manifests/' "$W/registry.log" || true ;;
    get) grep -c '"GET /v2/[^ ]*/manifests/' "$W/registry.log" || true ;;
    tags) grep -c '"GET /v2/[^ ]*/tags/list' "$W/registry.log" || true ;;
    ping) grep -c '"GET /v2/ ' "$W/registry.log" || true ;;
  esac
}
snapshot() { echo "$(count head) $(count get) $(count tags) $(count ping)"; }
delta() { # before after → head get tags ping
  local a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  echo "$((b[0] - a[0])) $((b[1] - a[1])) $((b[2] - a[2])) $((b[3] - a[3]))"
}
REPEAT=${REFRESH_BENCH_REPEAT:-3}
best() { if [ -z "$1" ] || [ "$(echo "$2 < $1" | bc -l)" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# --- stowage, newer = "minor" ------------------------------------------------
# rate = 0: raw speed against peers that do not pace (the default rate = 10
# per registry host would pace a run of 551 requests to 55 s).
cat >"$W/policy.toml" <<TOML
version = 1
[refresh]
newer = "minor"
rate = 0
TOML
SARGS=("${STORE[@]}" --policy "$W/policy.toml" --state-dir "$W/state")
"$BIN" "${SARGS[@]}" run refresh --format json >/dev/null # warm-up: history DB
T_STOWAGE=
S_REQ=
for _ in $(seq "$REPEAT"); do
  b=$(snapshot)
  t0=$(now)
  "$BIN" "${SARGS[@]}" run refresh --format json >"$W/refresh.json"
  t1=$(now)
  S_REQ=$(delta "$b" "$(snapshot)") # every run sends the same requests
  T_STOWAGE=$(best "$T_STOWAGE" "$(elapsed "$t0" "$t1")")
done
read -r S_HEAD S_GET S_TAGS S_PING <<<"$S_REQ"
read -r CHECKED NCHECKED PENDING OWN_TAGS < <(jq -r '[.metrics.checked, .metrics.newer_checked, .metrics.newer_pending, .tags_requests] | @tsv' "$W/refresh.json")

# --- Diun's pattern, emulated ---------------------------------------------------
T_DIUN=
D_REQ=
REPO_LIST=$(IFS=,; echo "${REPOS[*]}")
for _ in $(seq "$REPEAT"); do
  b=$(snapshot)
  read -r t _ _ _ _ < <("$W/diunemu" -registry "$ADDR" -repos "$REPO_LIST" -workers 10)
  D_REQ=$(delta "$b" "$(snapshot)")
  T_DIUN=$(best "$T_DIUN" "$t")
done
read -r D_HEAD D_GET D_TAGS D_PING <<<"$D_REQ"

# --- floor: N raw HEADs + R listings, curl at stowage's per_registry ----------
ACCEPT='Accept: application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'
: >"$W/heads.cfg"
: >"$W/lists.cfg"
for repo in "${REPOS[@]}"; do
  for ((j = 0; j < T; j++)); do
    printf 'url = "http://%s/v2/%s/manifests/%s"\noutput = "/dev/null"\n' "$ADDR" "$repo" "$(tagname "$j")" >>"$W/heads.cfg"
  done
  printf 'url = "http://%s/v2/%s/tags/list"\noutput = "/dev/null"\n' "$ADDR" "$repo" >>"$W/lists.cfg"
done
PER_REGISTRY=4
T_FLOOR=
T_HEADS=
F_REQ=
for _ in $(seq "$REPEAT"); do
  b=$(snapshot)
  t0=$(now)
  curl -s --head --parallel --parallel-max "$PER_REGISTRY" -H "$ACCEPT" -K "$W/heads.cfg" >/dev/null 2>&1
  t1=$(now)
  curl -s --parallel --parallel-max "$PER_REGISTRY" -K "$W/lists.cfg" >/dev/null 2>&1
  t2=$(now)
  F_REQ=$(delta "$b" "$(snapshot)")
  T_HEADS=$(best "$T_HEADS" "$(elapsed "$t0" "$t1")")
  T_FLOOR=$(best "$T_FLOOR" "$(elapsed "$t0" "$t2")")
done
read -r F_HEAD F_GET F_TAGS F_PING <<<"$F_REQ"

S_TOTAL=$((S_HEAD + S_GET + S_TAGS + S_PING))
D_TOTAL=$((D_HEAD + D_GET + D_TAGS + D_PING))
F_TOTAL=$((F_HEAD + F_GET + F_TAGS + F_PING))
R_REQ=$(echo "$S_TOTAL / $F_TOTAL" | bc -l)
R_TIME=$(echo "$T_STOWAGE / $T_FLOOR" | bc -l)
R_DIUN=$(echo "$D_TOTAL / $S_TOTAL" | bc -l)
verdict() { if [ "$(echo "$1 <= 1.5" | bc -l)" = 1 ]; then echo PASS; else echo FAIL; fi; }
V_REQ=$(verdict "$R_REQ")
V_TIME=$(verdict "$R_TIME")
{
  echo "refresh benchmark, newer versions — $(date -u +%Y-%m-%dT%H:%M:%SZ), $N tags in $R repositories ($T per repository, all pulled) on one local docker-registry ($(nproc) CPUs)"
  echo "policy: refresh.newer = \"minor\", refresh.rate = 0 (unpaced: raw speed; the default 10/s per registry host paces a run); requests counted in docker-registry's access log (per run); times: best of $REPEAT runs"
  echo "docker-registry 2.8 sends a repository's whole tag list in one page (it ignores n), so a listing is one request here"
  echo "Diun pattern (test/bench/diunemu, an emulation of its documented watch_repo behaviour, not Diun): per repository a /v2/ ping and a full tags/list walk, per listed tag a /v2/ ping and a HEAD (containers/image GetRepositoryTags and GetDigest), 10 workers"
  echo "floor: curl --parallel (max $PER_REGISTRY, stowage's per_registry) HEAD of every tag, then one tags/list per repository"
  printf '%-34s %8s %6s %6s %10s %6s %7s\n' "" "time" "HEAD" "GET" "tags/list" "/v2/" "total"
  printf '%-34s %7.3fs %6d %6d %10d %6d %7d\n' "stowage run refresh" "$T_STOWAGE" "$S_HEAD" "$S_GET" "$S_TAGS" "$S_PING" "$S_TOTAL"
  printf '%-34s %7.3fs %6d %6d %10d %6d %7d\n' "Diun watch_repo pattern (emulated)" "$T_DIUN" "$D_HEAD" "$D_GET" "$D_TAGS" "$D_PING" "$D_TOTAL"
  printf '%-34s %7.3fs %6d %6d %10d %6d %7d\n' "floor: curl HEADs + listings" "$T_FLOOR" "$F_HEAD" "$F_GET" "$F_TAGS" "$F_PING" "$F_TOTAL"
  printf '%-34s %7.3fs %6d\n' "  of which the $N HEADs alone" "$T_HEADS" "$F_HEAD"
  printf 'stowage: %s references checked, %s version tags checked for newer versions, %s with one pending; its own count: %s tag-list pages\n' "$CHECKED" "$NCHECKED" "$PENDING" "$OWN_TAGS"
  printf 'stowage / floor, requests          %6.2fx  (target <= 1.5x) %s\n' "$R_REQ" "$V_REQ"
  printf 'stowage / floor, time              %6.2fx  (target <= 1.5x) %s\n' "$R_TIME" "$V_TIME"
  printf 'Diun pattern / stowage, requests   %6.2fx\n' "$R_DIUN"
} | tee "$OUT"
[ "$V_REQ" = PASS ] || { echo "refresh_newer bench: stowage sent more than 1.5x the floor's requests" >&2; exit 1; }
