# Shared by the refresh benchmarks (sourced, not run: make bench runs only
# test/bench/*.sh). Every function works in the bench's scratch directory $W.

# bench_layer writes the one gzip layer every generated image shares straight
# into the registry's filesystem storage (distribution 2.x layout), and sets
# DIFF_ID, LAYER_HEX, LAYER_SIZE and V2 (the storage's v2 directory).
bench_layer() {
	mkdir -p "$W/gen/rootfs" "$W/gen/cfg" "$W/gen/man"
	echo "stowage bench" >"$W/gen/rootfs/hello"
	tar -C "$W/gen/rootfs" --mtime=@1700000000 --owner=0 --group=0 -cf "$W/gen/layer.tar" hello
	DIFF_ID=sha256:$(sha256sum <"$W/gen/layer.tar" | cut -d' ' -f1)
	gzip -n -c "$W/gen/layer.tar" >"$W/gen/layer.tgz"
	LAYER_HEX=$(sha256sum <"$W/gen/layer.tgz" | cut -d' ' -f1)
	LAYER_SIZE=$(stat -c %s "$W/gen/layer.tgz")
	V2=$W/data/docker/registry/v2
	mkdir -p "$V2/blobs/sha256/${LAYER_HEX:0:2}/$LAYER_HEX"
	cp "$W/gen/layer.tgz" "$V2/blobs/sha256/${LAYER_HEX:0:2}/$LAYER_HEX/data"
}

# bench_registry starts docker-registry on a free loopback port over $W/data,
# its access log on (the benchmarks count requests in it), and waits until it
# answers. It sets ADDR and REG_PID (the caller's cleanup kills it). Extra
# lines for the storage: section (indented by two spaces) come as $1.
bench_registry() {
	local port
	port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])' 2>/dev/null ||
		shuf -i 20000-60000 -n 1)
	ADDR=127.0.0.1:$port
	cat >"$W/registry.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $W/data
${1:-}
http:
  addr: $ADDR
YML
	docker-registry serve "$W/registry.yml" >"$W/registry.log" 2>&1 &
	REG_PID=$!
	for _ in $(seq 100); do curl -fs "http://$ADDR/v2/" >/dev/null && break; sleep 0.1; done
	curl -fs "http://$ADDR/v2/" >/dev/null || { echo "registry did not start" >&2; cat "$W/registry.log" >&2; exit 1; }
}

# bench_store points podman and stowage at a private vfs store in $W that
# trusts only the bench registry at $ADDR, and sets STORE (podman's flags).
bench_store() {
	printf 'unqualified-search-registries = []\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$ADDR" >"$W/registries.conf"
	printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' "$W/root" "$W/run" >"$W/storage.conf"
	printf '[engine]\ntmp_dir = "%s"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s"\n' "$W/tmp" "$W/events.log" >"$W/containers.conf"
	export CONTAINERS_REGISTRIES_CONF=$W/registries.conf CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_CONF=$W/containers.conf
	STORE=(--root "$W/root" --runroot "$W/run" --storage-driver vfs)
}
