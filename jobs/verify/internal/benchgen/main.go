// Command benchgen fills a containers/storage store with N small, distinct,
// signed images for test/bench/verify.sh: even ones signed with a GPG key
// (simple signing, made by `skopeo standalone-sign`), odd ones with a
// sigstore key (containers/image's signer). Each image is written as a
// dir: layout and copied into the store by containers/image in this one
// process, which is much cheaper than 200 podman pulls.
//
//	benchgen -root R -runroot RR -driver vfs -n 200 -gpg FPR \
//	    -sigstore-key K -sigstore-pass PASS -prefix bench.test
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/directory"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	storageTransport "go.podman.io/image/v5/storage"
	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
	stypes "go.podman.io/storage/types"
)

func main() {
	if reexec.Init() {
		return
	}
	root := flag.String("root", "", "graphroot")
	runroot := flag.String("runroot", "", "runroot")
	driver := flag.String("driver", "vfs", "graph driver")
	n := flag.Int("n", 200, "images")
	fpr := flag.String("gpg", "", "GPG key fingerprint (GNUPGHOME from the environment)")
	key := flag.String("sigstore-key", "", "sigstore private key file")
	pass := flag.String("sigstore-pass", "", "sigstore key passphrase")
	prefix := flag.String("prefix", "bench.test", "registry host of the names: PREFIX/gpg/imgN:1, PREFIX/sig/imgN:1")
	flag.Parse()
	if err := run(*root, *runroot, *driver, *n, *fpr, *key, *pass, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "benchgen:", err)
		os.Exit(1)
	}
}

func run(root, runroot, driver string, n int, fpr, key, pass, prefix string) error {
	st, err := storage.GetStore(stypes.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: driver})
	if err != nil {
		return err
	}
	defer func() { _, _ = st.Shutdown(false) }()
	pol, err := signature.NewPolicyFromBytes([]byte(`{"default":[{"type":"insecureAcceptAnything"}]}`))
	if err != nil {
		return err
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		return err
	}
	defer pc.Destroy()
	tmp, err := os.MkdirTemp("", "benchgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i := 0; i < n; i++ {
		kind := "gpg"
		if i%2 == 1 {
			kind = "sig"
		}
		name := fmt.Sprintf("%s/%s/img%d:1", prefix, kind, i)
		dir := filepath.Join(tmp, fmt.Sprint(i))
		if err := writeDir(dir, i); err != nil {
			return err
		}
		opts := &copy.Options{}
		if kind == "gpg" {
			cmd := exec.Command("skopeo", "standalone-sign", filepath.Join(dir, "manifest.json"), name, fpr, "-o", filepath.Join(dir, "signature-1"))
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("standalone-sign: %v: %s", err, out)
			}
		} else {
			opts.SignBySigstorePrivateKeyFile = key
			opts.SignSigstorePrivateKeyPassphrase = []byte(pass)
		}
		src, err := directory.NewReference(dir)
		if err != nil {
			return err
		}
		named, err := reference.ParseNormalizedNamed(name)
		if err != nil {
			return err
		}
		dst, err := storageTransport.Transport.NewStoreReference(st, named, "")
		if err != nil {
			return err
		}
		if _, err := copy.Image(context.Background(), pc, dst, src, opts); err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// writeDir writes a one-layer image with distinct content as a dir: layout.
func writeDir(dir string, i int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	body := []byte(fmt.Sprintf("benchmark image %d\n", i))
	if err := tw.WriteHeader(&tar.Header{Name: "id", Mode: 0o644, Size: int64(len(body))}); err != nil {
		return err
	}
	if _, err := tw.Write(body); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerDigest, err := blob(dir, layer.Bytes())
	if err != nil {
		return err
	}
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Labels": map[string]string{"bench": fmt.Sprint(i)}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	configDigest, err := blob(dir, config)
	if err != nil {
		return err
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layer.Len()}},
	})
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), manifest, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "version"), []byte("Directory Transport Version: 1.1\n"), 0o644)
}

func blob(dir string, data []byte) (string, error) {
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	return "sha256:" + h, os.WriteFile(filepath.Join(dir, h), data, 0o644)
}
