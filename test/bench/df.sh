#!/usr/bin/env bash
# Benchmark: `stowage df` against `podman system df` on the same vfs store of
# ≥ 1,000 images over shared base layers, and whether each tool's reclaimable
# figure equals the bytes `podman image prune -a` really frees (measured from
# the store's own records: Σ layer diff-size + Σ image big-data sizes).
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/df.sh   (as root; run by make bench)
set -euo pipefail
export LC_ALL=C # a decimal point in $EPOCHREALTIME and `times`
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
IMAGES=${DF_BENCH_IMAGES:-1000}
UNIQUE=${DF_BENCH_UNIQUE:-150}
REPS=${DF_BENCH_REPS:-9}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/results/df.txt"
mkdir -p "$here/results"
for t in podman jq go; do command -v "$t" >/dev/null || { echo "df.sh: $t missing (make deps)" >&2; exit 1; }; done

# podman refuses a runroot longer than 50 characters: keep the path short.
work=$(mktemp -d /tmp/stwg-df.XXXXXX)
root=$work/root run=$work/run
flags=(--root "$root" --runroot "$run" --storage-driver vfs)
cleanup() {
	podman "${flags[@]}" rm -af -t 0 >/dev/null 2>&1 || true
	podman "${flags[@]}" system reset -f >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
# Private tmp_dir and file locks: the default /run/libpod and the shared SHM
# lock table collide with other podman stores in use on the machine.
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s/events.log"\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' "$work" "$work" >"$work/containers.conf"
printf 'unqualified-search-registries = []\n' >"$work/registries.conf"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' "$root" "$run" >"$work/storage.conf"
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_REGISTRIES_CONF=$work/registries.conf CONTAINERS_STORAGE_CONF=$work/storage.conf

echo "df.sh: generating $IMAGES images ($UNIQUE with a layer of their own) in $root"
(cd "$repo" && CGO_ENABLED=1 go build -tags "containers_image_openpgp exclude_graphdriver_btrfs" -o "$work/dfgen" ./test/bench/dfgen)
gen_start=$(date +%s)
timeout 900 "$work/dfgen" -root "$root" -runroot "$run" -driver vfs -images "$IMAGES" -unique "$UNIQUE"
gen_secs=$(( $(date +%s) - gen_start ))
# A few containers keep their images (and the layers under them) in use.
for i in 0 1 2 3 4 5 6 7 8 9; do
	podman "${flags[@]}" create --pull=never --name "stwg-df-c$i" "localhost/bench/img$(( (i * 30) % IMAGES )):latest" true >/dev/null
done

# Exact truth from the store's records.
recorded() {
	local layers=0 images
	for f in "$root/vfs-layers/layers.json" "$run/vfs-layers/volatile-layers.json"; do
		[ -s "$f" ] && layers=$(( layers + $(jq '[.[] | (."diff-size" // 0)] | add // 0' "$f") ))
	done
	images=$(jq '[.[] | ((."big-data-sizes" // {}) | to_entries | map(.value) | add // 0)] | add // 0' "$root/vfs-images/images.json")
	echo $(( layers + images ))
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# timed CMD...: prints "WALL_MS CPU_MS". Wall is read from bash's
# microsecond clock right around the command (stowage df takes tens of
# milliseconds: /usr/bin/time's 10 ms steps are too coarse, and any extra
# process in the window would count against the faster tool). CPU = user +
# system of the command, children included (less sensitive than wall time
# to other load on a shared machine): the difference of the shell's
# children times before and after.
cputimes() { awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 }' "$1"; }
timed() {
	local t0 t1
	times >"$work/times0"
	t0=$EPOCHREALTIME
	"$@" >/dev/null
	t1=$EPOCHREALTIME
	times >"$work/times1"
	awk -v a="$t0" -v b="$t1" -v c0="$(cputimes "$work/times0")" -v c1="$(cputimes "$work/times1")" \
		'BEGIN {printf "%.1f %.1f\n", (b - a) * 1000, c1 - c0}'
}

images_listed=$(podman "${flags[@]}" images -a -q | wc -l)
load=$(cut -d' ' -f1-3 /proc/loadavg)
# Warm both twice (page cache, both binaries), then alternate the runs so
# that load from elsewhere on the machine hits both alike.
for _ in 1 2; do
	"$STOWAGE_BIN" "${flags[@]}" df >/dev/null
	podman "${flags[@]}" system df >/dev/null
done
st_wall=() st_cpu=() pm_wall=() pm_cpu=()
for _ in $(seq "$REPS"); do
	read -r w c < <(timed "$STOWAGE_BIN" "${flags[@]}" df)
	st_wall+=("$w") st_cpu+=("$c")
	read -r w c < <(timed podman "${flags[@]}" system df)
	pm_wall+=("$w") pm_cpu+=("$c")
done
st_med=$(printf '%s\n' "${st_wall[@]}" | median)
pm_med=$(printf '%s\n' "${pm_wall[@]}" | median)
st_cmed=$(printf '%s\n' "${st_cpu[@]}" | median)
pm_cmed=$(printf '%s\n' "${pm_cpu[@]}" | median)
ratio() { awk -v p="$1" -v s="$2" 'BEGIN {printf "%.1f", p / (s > 0 ? s : 1)}'; }

st_json=$("$STOWAGE_BIN" "${flags[@]}" df --format json)
st_reclaim=$(jq .reclaimable_bytes <<<"$st_json")
st_total=$(jq .total_bytes <<<"$st_json")
pm_reclaim=$(podman "${flags[@]}" system df --format '{{.Type}} {{.RawReclaimable}}' | awk '$1 == "Images" {print $2}')
pm_size=$(podman "${flags[@]}" system df --format '{{.Type}} {{.RawSize}}' | awk '$1 == "Images" {print $2}')

before=$(recorded)
podman "${flags[@]}" image prune -a -f >/dev/null
after=$(recorded)
freed=$(( before - after ))
left=$(podman "${flags[@]}" images -a -q | wc -l)
verdict() { [ "$1" = "$freed" ] && echo "exact" || echo "off by $(( $1 - freed )) bytes"; }

{
	echo "# stowage df vs podman system df — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "podman: $(podman --version); stowage: $("$STOWAGE_BIN" --version 2>/dev/null || echo "$STOWAGE_BIN")"
	echo "store: vfs, $images_listed images ($UNIQUE with own layers, 4 two-layer bases, every 10th untagged), 10 containers; generated in ${gen_secs}s"
	echo "repetitions: $REPS (median wall time)"
	echo "load average at start: $load"
	echo "stowage df:          wall median ${st_med} ms (runs: ${st_wall[*]}); cpu median ${st_cmed} ms (runs: ${st_cpu[*]})"
	echo "podman system df:    wall median ${pm_med} ms (runs: ${pm_wall[*]}); cpu median ${pm_cmed} ms (runs: ${pm_cpu[*]})"
	echo "speedup: wall $(ratio "$pm_med" "$st_med")x, cpu $(ratio "$pm_cmed" "$st_cmed")x (target >= 10x)"
	echo "store records before prune: $before bytes; stowage total_bytes: $st_total; podman images size: $pm_size"
	echo "podman image prune -a freed: $freed bytes ($images_listed -> $left images)"
	echo "stowage reclaimable_bytes:   $st_reclaim ($(verdict "$st_reclaim"))"
	echo "podman RawReclaimable:       $pm_reclaim ($(verdict "$pm_reclaim"))"
} | tee "$out"
