#!/usr/bin/env bash
# Benchmark: `stowage df` against `podman system df` on the same store of
# >= 1,000 images over shared base layers (vfs, then overlay), and whether each
# tool's reclaimable figure equals what `podman image prune -a` really gives
# back to the filesystem: the allocated bytes (st_blocks x 512, each inode
# once) the graphroot loses, measured with test/bench/allocbytes (not du,
# whose directory sizes depend on the coreutils version), and for reference
# the statfs free-space delta (noisy on a shared disk) and the store's own
# records (diff sizes: what stowage used to report, 4x off on vfs).
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/df.sh   (as root; run by make bench)
# DF_BENCH_DRIVERS="vfs overlay" picks the drivers.
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
flags=()
cleanup() {
	if [ ${#flags[@]} -gt 0 ]; then
		podman "${flags[@]}" rm -af -t 0 >/dev/null 2>&1 || true
		podman "${flags[@]}" system reset -f >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
(cd "$repo" && CGO_ENABLED=1 go build -tags "containers_image_openpgp exclude_graphdriver_btrfs" -o "$work/dfgen" ./test/bench/dfgen)
(cd "$repo" && go build -tags "containers_image_openpgp exclude_graphdriver_btrfs" -o "$work/allocbytes" ./test/bench/allocbytes)
alloc() { "$work/allocbytes" "$1" | cut -d' ' -f1; }
# Bytes available on the filesystem holding $1 (statfs f_bavail x f_bsize).
statfs_avail() { local a b; read -r a b < <(stat -f -c '%a %S' "$1"); echo $(( a * b )); }

# The store's own records: Σ layer diff-size + Σ image big-data sizes.
recorded() {
	local layers=0 images
	for f in "$root/$driver-layers/layers.json" "$run/$driver-layers/volatile-layers.json"; do
		[ -s "$f" ] && layers=$(( layers + $(jq '[.[] | (."diff-size" // 0)] | add // 0' "$f") ))
	done
	images=$(jq '[.[] | ((."big-data-sizes" // {}) | to_entries | map(.value) | add // 0)] | add // 0' "$root/$driver-images/images.json")
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

ratio() { awk -v p="$1" -v s="$2" 'BEGIN {printf "%.1f", p / (s > 0 ? s : 1)}'; }

bench_driver() {
	driver=$1
	root=$work/$driver/root run=$work/$driver/run
	flags=(--root "$root" --runroot "$run" --storage-driver "$driver")
	mkdir -p "$work/$driver"
	# Private tmp_dir and file locks: the default /run/libpod and the shared
	# SHM lock table collide with other podman stores in use on the machine.
	printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s/events.log"\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' "$work/$driver" "$work/$driver" >"$work/$driver/containers.conf"
	printf 'unqualified-search-registries = []\n' >"$work/registries.conf"
	printf '[storage]\ndriver = "%s"\ngraphroot = "%s"\nrunroot = "%s"\n' "$driver" "$root" "$run" >"$work/$driver/storage.conf"
	export CONTAINERS_CONF=$work/$driver/containers.conf CONTAINERS_REGISTRIES_CONF=$work/registries.conf CONTAINERS_STORAGE_CONF=$work/$driver/storage.conf

	echo "df.sh: generating $IMAGES $driver images ($UNIQUE with a layer of their own) in $root"
	local gen_start gen_secs
	gen_start=$(date +%s)
	timeout 900 "$work/dfgen" -root "$root" -runroot "$run" -driver "$driver" -images "$IMAGES" -unique "$UNIQUE"
	gen_secs=$(( $(date +%s) - gen_start ))
	# A few containers keep their images (and the layers under them) in use.
	for i in 0 1 2 3 4 5 6 7 8 9; do
		podman "${flags[@]}" create --pull=never --name "stwg-df-c$i" "localhost/bench/img$(( (i * 30) % IMAGES )):latest" true >/dev/null
	done

	local images_listed load cold
	images_listed=$(podman "${flags[@]}" images -a -q | wc -l)
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	# Cold: no measurement cached yet (every layer walked once).
	rm -f "$run/stowage-disk-usage.json"
	read -r cold _ < <(timed "$STOWAGE_BIN" "${flags[@]}" df)
	# Warm both twice (page cache, both binaries, stowage's layer cache),
	# then alternate the runs so that load from elsewhere on the machine
	# hits both alike.
	for _ in 1 2; do
		"$STOWAGE_BIN" "${flags[@]}" df >/dev/null
		podman "${flags[@]}" system df >/dev/null
	done
	local st_wall=() st_cpu=() pm_wall=() pm_cpu=() w c
	for _ in $(seq "$REPS"); do
		read -r w c < <(timed "$STOWAGE_BIN" "${flags[@]}" df)
		st_wall+=("$w") st_cpu+=("$c")
		read -r w c < <(timed podman "${flags[@]}" system df)
		pm_wall+=("$w") pm_cpu+=("$c")
	done
	local st_med pm_med st_cmed pm_cmed
	st_med=$(printf '%s\n' "${st_wall[@]}" | median)
	pm_med=$(printf '%s\n' "${pm_wall[@]}" | median)
	st_cmed=$(printf '%s\n' "${st_cpu[@]}" | median)
	pm_cmed=$(printf '%s\n' "${pm_cpu[@]}" | median)

	local st_json st_reclaim st_total pm_reclaim pm_size
	st_json=$("$STOWAGE_BIN" "${flags[@]}" df --format json)
	st_reclaim=$(jq .reclaimable_bytes <<<"$st_json")
	st_total=$(jq .total_bytes <<<"$st_json")
	pm_reclaim=$(podman "${flags[@]}" system df --format '{{.Type}} {{.RawReclaimable}}' | awk '$1 == "Images" {print $2}')
	pm_size=$(podman "${flags[@]}" system df --format '{{.Type}} {{.RawSize}}' | awk '$1 == "Images" {print $2}')

	local rec_before alloc_before avail_before rec_after alloc_after avail_after left
	sync
	rec_before=$(recorded) alloc_before=$(alloc "$root") avail_before=$(statfs_avail "$root")
	podman "${flags[@]}" image prune -a -f >/dev/null
	sync
	rec_after=$(recorded) alloc_after=$(alloc "$root") avail_after=$(statfs_avail "$root")
	freed=$(( alloc_before - alloc_after ))
	left=$(podman "${flags[@]}" images -a -q | wc -l)

	{
		echo
		echo "## $driver"
		echo "store: $driver, $images_listed images ($UNIQUE with own layers, 4 two-layer bases, every 10th untagged), 10 containers; generated in ${gen_secs}s"
		echo "repetitions: $REPS (median wall time); load average at start: $load"
		echo "stowage df (cold, no cache): wall ${cold} ms"
		echo "stowage df:          wall median ${st_med} ms (runs: ${st_wall[*]}); cpu median ${st_cmed} ms (runs: ${st_cpu[*]})"
		echo "podman system df:    wall median ${pm_med} ms (runs: ${pm_wall[*]}); cpu median ${pm_cmed} ms (runs: ${pm_cpu[*]})"
		echo "speedup (warm): wall $(ratio "$pm_med" "$st_med")x, cpu $(ratio "$pm_cmed" "$st_cmed")x (target >= 10x)"
		echo "before prune: graphroot allocated $alloc_before bytes; stowage total_bytes $st_total; podman images size $pm_size; store records $rec_before"
		echo "podman image prune -a ($images_listed -> $left images) gave back: $freed allocated bytes (truth); statfs free space +$(( avail_after - avail_before )); store records -$(( rec_before - rec_after ))"
		echo "stowage reclaimable_bytes:   $st_reclaim ($(verdict "$st_reclaim"))"
		echo "podman RawReclaimable:       $pm_reclaim ($(verdict "$pm_reclaim"))"
		echo "store records' reclaim:      $(( rec_before - rec_after )) ($(verdict $(( rec_before - rec_after ))))"
	} | tee -a "$out"
	podman "${flags[@]}" rm -af -t 0 >/dev/null 2>&1 || true
	podman "${flags[@]}" system reset -f >/dev/null 2>&1 || true
	rm -rf "${work:?}/$driver"
	flags=()
}

# verdict N: N against the truth ($freed), within 1% or 64 KiB.
verdict() {
	awk -v n="$1" -v f="$freed" 'BEGIN { d = n - f; t = (f / 100 > 65536) ? f / 100 : 65536; r = (f > 0) ? 100 * d / f : 0
		if (d <= t && d >= -t) printf "within 1%%/64 KiB: off by %d, %.2f%%", d, r; else printf "OFF by %d bytes, %+.1f%%", d, r }'
}

{
	echo "# stowage df vs podman system df — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "podman: $(podman --version); stowage: $("$STOWAGE_BIN" --version 2>/dev/null || echo "$STOWAGE_BIN"); $(nproc) CPUs"
	echo "truth: allocated bytes the graphroot gives back (test/bench/allocbytes: st_blocks x 512, each inode once);"
	echo "the statfs free-space delta is for reference only: other processes write to the same disk meanwhile"
} | tee "$out"
for d in ${DF_BENCH_DRIVERS:-vfs overlay}; do
	bench_driver "$d"
done
