#!/usr/bin/env bash
# Benchmark: stowage against three podman versions side by side on the same
# vfs store — podman 4.3.1 (Debian 12), 5.4.2 (Debian 13) and 5.8.x (sid),
# each run from the field matrix's cached root filesystem
# (test/e2e/rootfs.sh SUITE) — for
#  1. `podman system df` vs `stowage df` on 1,000 and 10,000 images
#     (wall time, best and median of REPS, and the total and reclaimable
#     bytes each reports, against what `podman image prune -a` frees);
#  2. removing the same 200 dangling images from the 1,000-image store:
#     `podman rmi ID...` and `podman image prune -f` vs `stowage run prune`
#     (dangling = true, nothing else selected). Not on 10,000 images by
#     default: podman 4.3.1 alone takes 72 s for the rmi there.
# Every podman gets its own copy of the store (cp -a --reflink=auto; it
# creates its own containers and database there), and stowage — the host's
# binary, on the host — reads or prunes that same copy or an identical copy
# of it, so each ratio compares the two tools on identical bytes.
#
# The rootfs trees are never written: each podman runs in a private mount
# namespace on a read-only bind of the tree, with tmpfs on /tmp, /run and
# /var/tmp and the store copy bound on /mnt. Podman's time is measured inside
# the chroot (bash's microsecond clock around the command), so namespace and
# chroot set-up are not counted; stowage's the same way on the host.
#
# stowage runs with no podman in PATH: it then resolves the store from
# storage.conf and the flags. With podman installed it asks `podman info`
# once and caches the answer (/run/stowage), so a warm run does not call
# podman either; here the host's podman 4.3.1 would otherwise write its own
# database into copies that podman 5 owns.
#
# Stores: dfgen (containers/image copies, as a pull) makes up to 1,000
# images; dfgrow adds the rest directly (dfgen rewrites images.json a few
# times per image: 10,000 take over an hour). A check at the start proves
# dfgrow writes what dfgen would: dfgen 300 vs dfgen 150 + dfgrow to 300.
#
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/podmans.sh  (as root; make bench)
# Knobs: PODMANS_BENCH_SIZES="1000 10000"  PODMANS_BENCH_REPS=5
#        PODMANS_BENCH_REMOVE=200  PODMANS_BENCH_SUITES="bookworm trixie sid"
#        PODMANS_BENCH_REMOVE_MAX=1000 (largest size on which removal is timed)
#        PODMANS_BENCH_REMOVE_REPS=3 (removal rounds, each on fresh copies)
#        PODMANS_BENCH_TRUTH_MAX=1000 (largest size on which every podman
#        runs `image prune -a` to measure what is really reclaimable)
# Image counts are read from images.json, not `podman images`: podman 4.3.1
# lists 10,000 images in minutes.
set -euo pipefail
export LC_ALL=C # a decimal point in $EPOCHREALTIME
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
STOWAGE_BIN=$(realpath "$STOWAGE_BIN")
SIZES=${PODMANS_BENCH_SIZES:-1000 10000}
REPS=${PODMANS_BENCH_REPS:-5}
REMOVE=${PODMANS_BENCH_REMOVE:-200}
SUITES=${PODMANS_BENCH_SUITES:-bookworm trixie sid}
TRUTH_MAX=${PODMANS_BENCH_TRUTH_MAX:-1000}
REMOVE_MAX=${PODMANS_BENCH_REMOVE_MAX:-1000}
REMOVE_REPS=${PODMANS_BENCH_REMOVE_REPS:-3}
UNIQUE=150   # images with a layer of their own (dfgen -unique)
GEN_MAX=1000 # images dfgen makes; dfgrow the rest
CONTAINERS=10
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/results/podmans.txt"
mkdir -p "$here/results"
for t in jq go unshare chroot; do command -v "$t" >/dev/null || { echo "podmans.sh: $t missing (make deps)" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "podmans.sh: run as root (mount namespaces, chroot)" >&2; exit 1; }

work=$(mktemp -d /tmp/stwg-pm.XXXXXX)
# Nothing is ever mounted in this namespace (only in the private ones that
# die with each chroot), so removing $work removes only our own files.
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/mnt" "$work/nobin" "$work/quadlet"
log() { echo "podmans.sh: $*" >&2; }

echo "podmans.sh: building dfgen and dfgrow" >&2
tags="containers_image_openpgp exclude_graphdriver_btrfs"
(cd "$repo" && CGO_ENABLED=1 go build -tags "$tags" -o "$work/dfgen" ./test/bench/dfgen &&
	CGO_ENABLED=1 go build -tags "$tags" -o "$work/dfgrow" ./test/bench/dfgrow)

# dfgrow check: its images are byte for byte dfgen's (records and big data;
# layers are dfgen's own in both, equal but for their creation times).
"$work/dfgen" -root "$work/ck1/root" -runroot "$work/ck1/run" -images 300 -unique "$UNIQUE" >/dev/null
"$work/dfgen" -root "$work/ck2/root" -runroot "$work/ck2/run" -images "$UNIQUE" -unique "$UNIQUE" >/dev/null
"$work/dfgrow" -root "$work/ck2/root" -images 300 -unique "$UNIQUE" >/dev/null
imgsum() { (cd "$1/root/vfs-images" && find . -type f ! -name '*.lock' | sort | xargs sha256sum | sha256sum | cut -c1-16); }
laysum() { jq -cS 'map(del(.created))' "$1/root/vfs-layers/layers.json" | sha256sum | cut -c1-16; }
if [ "$(imgsum "$work/ck1")" != "$(imgsum "$work/ck2")" ] || [ "$(laysum "$work/ck1")" != "$(laysum "$work/ck2")" ]; then
	echo "podmans.sh: dfgrow's store differs from dfgen's" >&2
	exit 1
fi
growcheck="dfgrow check: dfgen 300 == dfgen $UNIQUE + dfgrow to 300 (images.json and every image file identical; layers.json equal but for creation times)"
rm -rf "$work/ck1" "$work/ck2"

# inroot ROOTFS STORE SCRIPT: run SCRIPT with bash in ROOTFS (read-only)
# with STORE on /mnt, in a private mount namespace.
inroot() {
	unshare --mount --propagation private -- bash -euo pipefail -c '
		R=$1 S=$2 M=$3
		mount --bind "$R" "$M"
		mount -o remount,bind,ro "$M"
		mount -t proc proc "$M/proc"
		mount --rbind /dev "$M/dev"
		mount --rbind /sys "$M/sys"
		for d in tmp run var/tmp; do mount -t tmpfs tmpfs "$M/$d"; done
		mount --bind "$S" "$M/mnt"
		exec chroot "$M" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C \
			PODMAN_IGNORE_CGROUPSV1_WARNING=1 CONTAINERS_CONF=/mnt/containers.conf \
			CONTAINERS_REGISTRIES_CONF=/mnt/registries.conf CONTAINERS_STORAGE_CONF=/mnt/storage.conf \
			/bin/bash -euo pipefail -c "p() { podman --root /mnt/root --runroot /mnt/run --storage-driver vfs \"\$@\"; }
			tm() { local t0 t1; t0=\$EPOCHREALTIME; \"\$@\" >/dev/null; t1=\$EPOCHREALTIME; echo \"\$t0 \$t1\"; }
			$4"
	' inroot "$1" "$2" "$work/mnt" "$3"
}
# ms T0 T1: milliseconds between two $EPOCHREALTIME readings.
ms() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f\n", (b - a) * 1000}'; }
# podman_timed ROOTFS STORE CMD...: wall ms of `p CMD` inside the rootfs.
podman_timed() {
	local r=$1 s=$2
	shift 2
	read -r a b < <(inroot "$r" "$s" "tm p $*") || true
	[ -n "${b:-}" ] || { echo "podmans.sh: podman $* failed in $r" >&2; exit 1; }
	ms "$a" "$b"
}
# stw STORE ARGS...: the host's stowage on a store copy, no podman in PATH.
stw() {
	local s=$1
	shift
	PATH=$work/nobin CONTAINERS_STORAGE_CONF=$s/storage-host.conf \
		"$STOWAGE_BIN" --policy "$work/policy.toml" --state-dir "$s/stowage-state" \
		--root "$s/root" --runroot "$s/run" --storage-driver vfs "$@"
}
stowage_timed() {
	local a b
	a=$EPOCHREALTIME
	stw "$@" >/dev/null
	b=$EPOCHREALTIME
	ms "$a" "$b"
}
commas() { sed -e ':a' -e 's/\B[0-9]\{3\}\>/,&/' -e 'ta' <<<"$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
best() { sort -n | head -n1; }
ratio() { awk -v p="$1" -v s="$2" 'BEGIN {printf "%.1f", p / (s > 0 ? s : 1)}'; }
mb() { awk -v b="$1" 'BEGIN {printf "%.2f MB", b / 1e6}'; }
# recorded STORE: bytes the store records (Σ layer diff-size + Σ image
# big-data sizes); disk STORE: bytes of its files (du --apparent-size).
recorded() {
	local layers=0 f
	for f in "$1/root/vfs-layers/layers.json" "$1/run/vfs-layers/volatile-layers.json"; do
		[ -s "$f" ] && layers=$((layers + $(jq '[.[] | (."diff-size" // 0)] | add // 0' "$f")))
	done
	echo $((layers + $(jq '[.[] | ((."big-data-sizes" // {}) | to_entries | map(.value) | add // 0)] | add // 0' "$1/root/vfs-images/images.json")))
}
disk() { du -sb "$1/root/vfs" "$1/root/vfs-layers" "$1/root/vfs-images" "$1/root/vfs-containers" | awk '{n += $1} END {print n}'; }
# dfline: "Images RawSize RawReclaimable" of a podman's system df.
count() { jq length "$1/root/vfs-images/images.json"; }
pm_df_images() { inroot "$1" "$2" "p system df --format '{{.Type}} {{.RawSize}} {{.RawReclaimable}}'" | awk '$1 == "Images" {print $2, $3}'; }

printf 'version = 1\n[prune]\nmin_free = "0"\nmin_age = "0"\nunused_for = "0"\nkeep_last = 1\ndangling = true\norphan_layers = true\n' >"$work/policy.toml"

# setup_copy SRC DST: a copy of a store with the configuration files podman
# (inside the rootfs: /mnt) and stowage (host paths) read.
setup_copy() {
	cp -a --reflink=auto "$1" "$2"
	write_confs "$2"
	rm -rf "$2/stowage-state"
}
write_confs() {
	printf '[containers]\nnetns = "none"\n[network]\nnetwork_config_dir = "/mnt/networks"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "/mnt/events.log"\ntmp_dir = "/mnt/tmp"\nlock_type = "file"\n' >"$1/containers.conf"
	printf 'unqualified-search-registries = []\n' >"$1/registries.conf"
	printf '[storage]\ndriver = "vfs"\ngraphroot = "/mnt/root"\nrunroot = "/mnt/run"\n' >"$1/storage.conf"
	printf '[storage]\ndriver = "vfs"\ngraphroot = "%s/root"\nrunroot = "%s/run"\n' "$1" "$1" >"$1/storage-host.conf"
}

declare -A rootfs version
for s in $SUITES; do
	rootfs[$s]=$(bash "$repo/test/e2e/rootfs.sh" "$s")
	mkdir -p "$work/v-$s" && write_confs "$work/v-$s"
	version[$s]=$(inroot "${rootfs[$s]}" "$work/v-$s" "podman version --format '{{.Client.Version}}'")
done

body=$work/body.txt
: >"$body"
summary=()
for n in $SIZES; do
	untag=$((n / REMOVE))
	[ "$untag" -ge 1 ] || { echo "podmans.sh: $n images cannot have $REMOVE dangling ones" >&2; exit 1; }
	gen=$((n < GEN_MAX ? n : GEN_MAX))
	[ "$gen" -ge "$UNIQUE" ] || gen=$((n < UNIQUE ? n : UNIQUE))
	master=$work/m$n
	log "$n images: dfgen $gen$([ "$n" -gt "$gen" ] && echo ", dfgrow to $n") (every ${untag}th image dangling)"
	t0=$EPOCHREALTIME
	"$work/dfgen" -root "$master/root" -runroot "$master/run" -driver vfs -images "$gen" -unique "$UNIQUE" -untag-every "$untag" >/dev/null
	t1=$EPOCHREALTIME
	[ "$n" -gt "$gen" ] && "$work/dfgrow" -root "$master/root" -images "$n" -unique "$UNIQUE" -untag-every "$untag" >/dev/null
	t2=$EPOCHREALTIME
	jq -r '.[] | select((.names // []) | length == 0) | .id' "$master/root/vfs-images/images.json" | sort >"$master/dangling"
	ndangling=$(wc -l <"$master/dangling")
	{
		echo
		echo "## $n images (vfs; $((n / untag)) dangling; $CONTAINERS containers made by each podman in its own copy)"
		echo "generated: dfgen $gen images in $(ms "$t0" "$t1") ms$([ "$n" -gt "$gen" ] && echo ", dfgrow to $n in $(ms "$t1" "$t2") ms"); load average $(cut -d' ' -f1-3 /proc/loadavg)"
	} >>"$body"
	worst_st=0
	for s in $SUITES; do
		r=${rootfs[$s]} v=${version[$s]} c=$work/$s-$n
		log "$n images: podman $v ($s)"
		setup_copy "$master" "$c"
		# Figures with no container, then the containers (set-up, untimed).
		read -r nc_size nc_rec < <(pm_df_images "$r" "$c")
		nc_st=$(stw "$c" df --volumes no --format json | jq -r '"\(.total_bytes) \(.reclaimable_bytes)"')
		inroot "$r" "$c" "for i in \$(seq 0 $((CONTAINERS - 1))); do p create --pull=never --name stwg-c\$i localhost/bench/img\$(( (i * 30) % $n )):latest true >/dev/null; done"
		# Warm both twice, then alternate so load elsewhere hits both alike.
		for _ in 1 2; do
			stw "$c" df >/dev/null
			inroot "$r" "$c" "p system df >/dev/null"
		done
		st=() pm=()
		for _ in $(seq "$REPS"); do
			st+=("$(stowage_timed "$c" df)")
			pm+=("$(podman_timed "$r" "$c" system df)")
		done
		# Cold: the store changed since the last df (here: its snapshot is
		# gone), so df loads the store and measures what changed.
		cold=()
		for _ in $(seq "$REPS"); do
			rm -f "$c/run/stowage-df-snapshot.json"
			cold+=("$(stowage_timed "$c" df)")
		done
		cold_med=$(printf '%s\n' "${cold[@]}" | median)
		st_med=$(printf '%s\n' "${st[@]}" | median) st_best=$(printf '%s\n' "${st[@]}" | best)
		pm_med=$(printf '%s\n' "${pm[@]}" | median) pm_best=$(printf '%s\n' "${pm[@]}" | best)
		worst_st=$(awk -v a="$worst_st" -v b="$st_med" -v c="$cold_med" 'BEGIN {m = (b > a) ? b : a; print (c > m) ? c : m}')
		read -r pm_size pm_rec < <(pm_df_images "$r" "$c")
		read -r st_total st_rec < <(stw "$c" df --volumes no --format json | jq -r '"\(.total_bytes) \(.reclaimable_bytes)"')
		rec_before=$(recorded "$c") disk_before=$(disk "$c")

		# Removal: the same dangling images, each run on a fresh copy of
		# this podman's store; the tools alternate, REMOVE_REPS rounds.
		removal=()
		if [ "$n" -le "$REMOVE_MAX" ]; then
			cp "$master/dangling" "$c/ids"
			rmi=() prn=() srm=() left=()
			for _ in $(seq "$REMOVE_REPS"); do
				for k in rmi prune stowage; do cp -a --reflink=auto "$c" "$c.$k"; done
				rmi+=("$(podman_timed "$r" "$c.rmi" rmi '$(cat /mnt/ids)')")
				prn+=("$(podman_timed "$r" "$c.prune" image prune -f)")
				now=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ) # past the 2-minute floor for nameless images
				a=$EPOCHREALTIME
				stw "$c.stowage" run prune --format json --quadlet-dir "$work/quadlet" --now "$now" >"$work/prune.json"
				b=$EPOCHREALTIME
				srm+=("$(ms "$a" "$b")")
				st_removed=$(jq -r '.removed[] | select(.layer | not) | .id' "$work/prune.json" | sort)
				if [ "$st_removed" != "$(cat "$master/dangling")" ]; then
					echo "podmans.sh: stowage run prune removed other images than the $ndangling dangling ones" >&2
					exit 1
				fi
				left+=("$(count "$c.rmi")/$(count "$c.prune")/$(count "$c.stowage")")
				rm -rf "$c.rmi" "$c.prune" "$c.stowage"
			done
			rmi_ms=$(printf '%s\n' "${rmi[@]}" | median) prune_ms=$(printf '%s\n' "${prn[@]}" | median) st_rm_ms=$(printf '%s\n' "${srm[@]}" | median)
			removal=(
				"remove the $ndangling dangling images (median of $REMOVE_REPS, fresh copies): podman rmi ID... ${rmi_ms} ms (runs: ${rmi[*]}), podman image prune -f ${prune_ms} ms (runs: ${prn[*]}), stowage run prune ${st_rm_ms} ms (runs: ${srm[*]}); the same $ndangling removed by all; images left rmi/prune/stowage: ${left[*]}"
				"ratio podman $v / stowage: rmi $(ratio "$rmi_ms" "$st_rm_ms")x, image prune $(ratio "$prune_ms" "$st_rm_ms")x"
			)
		fi

		# What is really reclaimable: what `podman image prune -a` frees.
		truth=()
		if [ "$n" -le "$TRUTH_MAX" ]; then
			cp -a --reflink=auto "$c" "$c.all"
			inroot "$r" "$c.all" "p image prune -a -f >/dev/null"
			freed_rec=$((rec_before - $(recorded "$c.all")))
			freed_disk=$((disk_before - $(disk "$c.all")))
			truth=("podman image prune -a freed $freed_rec recorded bytes ($(mb "$freed_rec")), $freed_disk bytes on disk ($(mb "$freed_disk")) ($n -> $(count "$c.all") images); reclaimable minus freed: podman $((pm_rec - freed_rec)) (recorded) / $((pm_rec - freed_disk)) (disk), stowage $((st_rec - freed_rec)) / $((st_rec - freed_disk)) bytes")
			rm -rf "$c.all"
		fi
		{
			echo
			echo "### podman $v (Debian $s rootfs) vs stowage $("$STOWAGE_BIN" --version 2>/dev/null | awk '{print $NF}')"
			echo "system df: median ${pm_med} ms, best ${pm_best} ms (runs: ${pm[*]})"
			echo "stowage df: median ${st_med} ms, best ${st_best} ms (runs: ${st[*]})"
			echo "stowage df after a store change (no snapshot to serve; loads the store): median ${cold_med} ms (runs: ${cold[*]}); ratio podman $v / stowage: $(ratio "$pm_med" "$cold_med")x"
			echo "ratio podman $v / stowage: median $(ratio "$pm_med" "$st_med")x, best $(ratio "$pm_best" "$st_best")x"
			echo "no container: podman images size $nc_size, reclaimable $nc_rec; stowage total/reclaimable ${nc_st/ //}"
			echo "$CONTAINERS containers: podman images size $pm_size ($(mb "$pm_size")), reclaimable $pm_rec ($(mb "$pm_rec")); stowage total $st_total, reclaimable $st_rec ($(mb "$st_rec")); store records $rec_before"
			for l in "${truth[@]}" "${removal[@]}"; do echo "$l"; done
		} | tee -a "$body" >&2
		rm -rf "$c"
	done
	rm -rf "$master"
	verdict=$(awk -v t="$worst_st" 'BEGIN {print (t < 1000) ? "PASS" : "FAIL"}')
	summary+=("stowage df $(commas "$n") images: $(awk -v t="$worst_st" 'BEGIN {printf "%.3f", t / 1000}') s (worst median of the ${SUITES// /, } copies, warm or after a store change; < 1 s: $verdict)")
done

{
	echo "# stowage vs podman $(for s in $SUITES; do printf '%s (%s) ' "${version[$s]}" "$s"; done)— $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) CPUs"
	echo "stowage: $("$STOWAGE_BIN" --version 2>/dev/null); host podman: $(podman --version 2>/dev/null || echo none)"
	echo "each podman runs from test/e2e/rootfs.sh SUITE's tree (read-only chroot, timed inside); stowage on the host without podman in PATH; $REPS repetitions, alternated"
	echo "removal (stores of at most $REMOVE_MAX images): the store's dangling images (dfgen -untag-every), by podman rmi of their IDs, by podman image prune -f and by stowage run prune with only dangling = true selecting (min_age 0, --now 2 h ahead for the 2-minute floor of nameless images)"
	echo "$growcheck"
	printf '%s\n' "${summary[@]}"
	cat "$body"
} >"$out"
cat "$out"
