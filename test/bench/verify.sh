#!/usr/bin/env bash
# Benchmark of `stowage run verify`:
#  1. signature re-verification throughput (images/s) over 200 signed images,
#     half GPG simple signing, half sigstore, under a policy that requires them;
#  2. integrity scan (`--integrity`) of >= 2 GiB of random-content layers:
#     MB/s against `sha256sum` of the very same layer files in the same run
#     (target >= 70% of sha256sum), and stowage's peak RSS (target < 100 MiB).
# Page cache is warmed for both tools and runs alternate, so both read from
# memory: the ratio compares hashing pipelines, not the disk.
# Usage: STOWAGE_BIN=bin/stowage bash test/bench/verify.sh   (as root; run by make bench)
set -euo pipefail
: "${STOWAGE_BIN:?set STOWAGE_BIN to the stowage binary}"
IMAGES=${VERIFY_BENCH_IMAGES:-200}
LAYERS=${VERIFY_BENCH_LAYERS:-4}
LAYER_MIB=${VERIFY_BENCH_LAYER_MIB:-576} # 4 x 576 MiB = 2.25 GiB
REPS=${VERIFY_BENCH_REPS:-3}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out="$here/results/verify.txt"
mkdir -p "$here/results"
for t in podman skopeo gpg jq go sha256sum /usr/bin/time; do command -v "$t" >/dev/null || { echo "verify.sh: $t missing (make deps)" >&2; exit 1; }; done

# podman refuses a runroot longer than 50 characters: keep the paths short.
work=$(mktemp -d /tmp/stwg-vfy.XXXXXX)
s1=(--root "$work/s1/root" --runroot "$work/s1/run" --storage-driver vfs)
s2=(--root "$work/s2/root" --runroot "$work/s2/run" --storage-driver vfs)
cleanup() {
	for s in s1 s2; do
		podman --root "$work/$s/root" --runroot "$work/$s/run" --storage-driver vfs system reset -f >/dev/null 2>&1 || true
	done
	GNUPGHOME=$work/gnupg gpgconf --kill all >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s/events.log"\ntmp_dir = "%s/tmp"\nlock_type = "file"\n' "$work" "$work" >"$work/containers.conf"
printf 'unqualified-search-registries = []\n' >"$work/registries.conf"
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_REGISTRIES_CONF=$work/registries.conf
export GNUPGHOME=$work/gnupg
mkdir -m 700 "$GNUPGHOME"

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# timed CMD...: prints "WALL_MS MAXRSS_KIB".
timed() {
	/usr/bin/time -v -o "$work/time" "$@" >/dev/null
	awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; wall = s * 1000}
		/Maximum resident set size/ {rss = $2} END {printf "%d %d\n", wall, rss}' "$work/time"
}

# --- 1. signatures -----------------------------------------------------------
gpg --batch --passphrase '' --quick-gen-key "stwg-verify-bench <bench@verify.test>" ed25519 sign never 2>/dev/null
fpr=$(gpg --batch --with-colons --list-keys 2>/dev/null | awk -F: '/^fpr/ {print $10; exit}')
gpg --batch --armor --export "$fpr" >"$work/gpg.pub"
(cd "$repo" && CGO_ENABLED=1 go build -tags "containers_image_openpgp exclude_graphdriver_btrfs" -o "$work/benchgen" ./jobs/verify/internal/benchgen \
	&& go build -tags "containers_image_openpgp exclude_graphdriver_btrfs" -o "$work/sigstorekeygen" ./jobs/verify/internal/sigstorekeygen)
"$work/sigstorekeygen" "$work/sigstore" stwg-bench-pass
echo "verify.sh: generating $IMAGES signed images"
gen_start=$(date +%s)
timeout 900 "$work/benchgen" -root "$work/s1/root" -runroot "$work/s1/run" -driver vfs -n "$IMAGES" \
	-gpg "$fpr" -sigstore-key "$work/sigstore.key" -sigstore-pass stwg-bench-pass -prefix bench.test
gen_secs=$(( $(date +%s) - gen_start ))
cat >"$work/policy.json" <<JSON
{"default": [{"type": "reject"}],
 "transports": {"docker": {
   "bench.test/gpg": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "$work/gpg.pub"}],
   "bench.test/sig": [{"type": "sigstoreSigned", "keyPath": "$work/sigstore.pub"}]}}}
JSON
printf 'version = 1\n[verify]\nmode = "report"\npolicy_json = "%s"\n' "$work/policy.json" >"$work/sig.toml"
printf 'version = 1\n[verify]\nmode = "off"\n' >"$work/int.toml"
sig_run=("$STOWAGE_BIN" "${s1[@]}" --policy "$work/sig.toml" --state-dir "$work/state1" run verify --format json)
"${sig_run[@]}" >"$work/sig.json"
accepted=$(jq '[.results[] | select(.status == "accepted")] | length' "$work/sig.json")
by_rule=$(jq -r '[.results[] | .reason] | group_by(.) | map("\(.[0])=\(length)") | join(" ")' "$work/sig.json")
if [ "$accepted" != "$IMAGES" ]; then
	echo "verify.sh: only $accepted of $IMAGES images accepted" >&2
	jq '.results[] | select(.status != "accepted")' "$work/sig.json" | head -20 >&2
	exit 1
fi
sig_wall=() sig_rss=()
for _ in $(seq "$REPS"); do
	read -r w r < <(timed "${sig_run[@]}")
	sig_wall+=("$w") sig_rss+=("$r")
done
sig_med=$(printf '%s\n' "${sig_wall[@]}" | median)
sig_ips=$(awk -v n="$IMAGES" -v ms="$sig_med" 'BEGIN {printf "%.0f", n / (ms > 0 ? ms : 1) * 1000}')

# --- 2. integrity -------------------------------------------------------------
echo "verify.sh: generating $LAYERS layers of $LAYER_MIB MiB"
for i in $(seq "$LAYERS"); do
	mkdir -p "$work/l$i"
	head -c "${LAYER_MIB}M" /dev/urandom >"$work/l$i/blob$i"
	tar -C "$work/l$i" -cf "$work/l$i.tar" "blob$i"
	rm -rf "$work/l$i"
	podman "${s2[@]}" import -q "$work/l$i.tar" "localhost/big$i:1" >/dev/null
	rm -f "$work/l$i.tar"
done
mapfile -t files < <(find "$work/s2/root/vfs/dir" -type f -name 'blob*')
total_bytes=$(du -cb "${files[@]}" | awk 'END {print $1}')
int_run=("$STOWAGE_BIN" "${s2[@]}" --policy "$work/int.toml" --state-dir "$work/state2" run verify --integrity --format json)
"${int_run[@]}" >"$work/int.json"
checked=$(jq '[.layers[] | select(.status == "ok")] | length' "$work/int.json")
scanned=$(jq '[.layers[].bytes] | add' "$work/int.json")
[ "$checked" = "$LAYERS" ] || { echo "verify.sh: integrity found $checked clean layers of $LAYERS" >&2; jq .layers "$work/int.json" >&2; exit 1; }
sha256sum "${files[@]}" >/dev/null # warm the page cache for both
st_wall=() st_rss=() sh_wall=()
for _ in $(seq "$REPS"); do
	read -r w r < <(timed "${int_run[@]}")
	st_wall+=("$w") st_rss+=("$r")
	read -r w _ < <(timed sha256sum "${files[@]}")
	sh_wall+=("$w")
done
st_med=$(printf '%s\n' "${st_wall[@]}" | median)
sh_med=$(printf '%s\n' "${sh_wall[@]}" | median)
rss_max=$(printf '%s\n' "${st_rss[@]}" | sort -n | tail -1)
mbs() { awk -v b="$1" -v ms="$2" 'BEGIN {printf "%.0f", b / 1e6 / (ms > 0 ? ms : 1) * 1000}'; }
st_mbs=$(mbs "$scanned" "$st_med")
sh_mbs=$(mbs "$total_bytes" "$sh_med")
pct=$(awk -v a="$st_mbs" -v b="$sh_mbs" 'BEGIN {printf "%.0f", a / (b > 0 ? b : 1) * 100}')

{
	echo "# stowage run verify — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "podman: $(podman --version); skopeo: $(skopeo --version); stowage: $("$STOWAGE_BIN" --version 2>/dev/null || echo "$STOWAGE_BIN")"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); repetitions: $REPS (median wall time)"
	echo "signatures: $IMAGES images (generated in ${gen_secs}s), accepted: $accepted ($by_rule)"
	echo "  stowage run verify: wall median ${sig_med} ms (runs: ${sig_wall[*]}) -> ${sig_ips} images/s; peak RSS $(( $(printf '%s\n' "${sig_rss[@]}" | sort -n | tail -1) / 1024 )) MiB"
	echo "integrity: $LAYERS layers, $total_bytes bytes of files, $scanned bytes of tar streams"
	echo "  stowage --integrity: wall median ${st_med} ms (runs: ${st_wall[*]}) -> ${st_mbs} MB/s; peak RSS $(( rss_max / 1024 )) MiB (target < 100 MiB)"
	echo "  sha256sum:           wall median ${sh_med} ms (runs: ${sh_wall[*]}) -> ${sh_mbs} MB/s"
	echo "  ratio: ${pct}% of sha256sum's throughput (target >= 70%)"
} | tee "$out"
