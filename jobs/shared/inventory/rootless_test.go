package inventory_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/test/testenv"
)

// TestRootless: a non-root user with /etc/subuid ranges fills its overlay
// store with rootless podman; `stowage df` and `stowage images`, run as that
// user with no wrapper (no podman unshare), enter the user namespace
// themselves and agree with podman.
func TestRootless(t *testing.T) {
	testenv.RequireTool(t, "podman", "tar")
	u := testenv.NewRootlessUser(t, "stwg-inv")
	bin := u.Install(t, testenv.Stowage(t))
	u.Run(t, nil, "sh", "-ec", `
mkdir -p ~/.config/containers ~/ctx ~/rootfs
printf '[storage]\ndriver = "overlay"\n' > ~/.config/containers/storage.conf
printf '[containers]\nnetns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n' > ~/.config/containers/containers.conf
printf 'unqualified-search-registries = []\n' > ~/.config/containers/registries.conf
head -c 200000 /dev/urandom > ~/rootfs/base
tar -C ~/rootfs -cf ~/base.tar .
head -c 30000 /dev/urandom > ~/ctx/a
printf 'FROM localhost/rbase:1\nCOPY a /a\n' > ~/ctx/Containerfile
`)
	t.Cleanup(func() { _, _ = u.RunErr(nil, "podman", "system", "reset", "-f") })
	podman := func(args ...string) string { return strings.TrimSpace(u.Run(t, nil, "podman", args...)) }
	podman("import", "-q", u.Home+"/base.tar", "localhost/rbase:1")
	podman("build", "-q", "--pull=never", "-t", "localhost/rapp:1", u.Home+"/ctx")
	podman("tag", "localhost/rbase:1", "localhost/rbase:2")
	podman("create", "--name", "stwg-inv-rc", "localhost/rapp:1", "true")
	if d := podman("info", "--format", "{{.Store.GraphDriverName}}"); d != "overlay" {
		t.Fatalf("rootless podman uses %q, want overlay", d)
	}

	var df inventory.Accounting
	if err := json.Unmarshal([]byte(u.Run(t, nil, bin, "df", "--format", "json")), &df); err != nil {
		t.Fatal(err)
	}
	if df.Driver != "overlay" || !strings.HasPrefix(df.GraphRoot, u.Home) {
		t.Errorf("stowage df used %s at %s", df.Driver, df.GraphRoot)
	}
	if df.Images.Count != 2 || df.Images.InUseCount != 1 || df.Containers.Count != 1 || df.Layers.OrphanCount != 0 {
		t.Errorf("df: %+v", df)
	}
	if df.TotalBytes < 230_000 || df.ReclaimableBytes <= 0 || df.ReclaimableBytes >= 200_000 {
		// Only the base's record is reclaimable: its layer is under rapp.
		t.Errorf("total %d reclaimable %d", df.TotalBytes, df.ReclaimableBytes)
	}

	var imgs []inventory.ImageUsage
	if err := json.Unmarshal([]byte(u.Run(t, nil, bin, "images", "--format", "json")), &imgs); err != nil {
		t.Fatal(err)
	}
	var pi []podmanImage
	if err := json.Unmarshal([]byte(podman("images", "--format", "json")), &pi); err != nil {
		t.Fatal(err)
	}
	size := map[string]int64{}
	for _, i := range pi {
		size[i.ID] = i.Size
	}
	if len(imgs) != 2 {
		t.Fatalf("stowage images lists %d images", len(imgs))
	}
	// Sizes are on disk (allocated blocks): at least the random files'
	// bytes, and never below podman's diff sizes by more than the tar
	// headers those count.
	for _, i := range imgs {
		if i.SizeBytes < 200_000 || i.SizeBytes < size[i.ID]-64<<10 {
			t.Errorf("image %.12s: size %d, podman %d", i.ID, i.SizeBytes, size[i.ID])
		}
	}

	// What prune -a then frees as the user is the reclaimable figure: the
	// allocated bytes the store gives back, measured inside the user
	// namespace (where the subuid-owned files are readable), each inode
	// once, independent of coreutils' directory sizes.
	storeBytes := func() int64 {
		out := podman("unshare", "sh", "-c", `find "$HOME/.local/share/containers/storage" -xdev -printf '%i %b\n' | sort -u | awk '{ s += $2 * 512 } END { printf "%d", s }'`)
		n, err := strconv.ParseInt(out, 10, 64)
		if err != nil {
			t.Fatalf("store bytes %q: %v", out, err)
		}
		return n
	}
	before := storeBytes()
	podman("image", "prune", "-a", "-f")
	gone := before - storeBytes()
	var after inventory.Accounting
	if err := json.Unmarshal([]byte(u.Run(t, nil, bin, "df", "--format", "json")), &after); err != nil {
		t.Fatal(err)
	}
	if !near(df.ReclaimableBytes, gone) || !near(df.TotalBytes-after.TotalBytes, gone) {
		t.Errorf("reclaimable %d, total fell by %d, the store gave back %d", df.ReclaimableBytes, df.TotalBytes-after.TotalBytes, gone)
	}
}
