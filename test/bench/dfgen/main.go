// Command dfgen fills a containers/storage store with many small images
// over a few shared base layers, for test/bench/df.sh. It writes an OCI
// layout (a few two-layer bases, one small layer of its own per image) and copies
// every image into the store with containers/image, as a pull would, so
// podman lists and prunes the result like any other image.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	digest "github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/storage"
	"go.podman.io/storage/pkg/reexec"
	"go.podman.io/storage/types"
)

func main() {
	if reexec.Init() {
		return
	}
	var (
		root     = flag.String("root", "", "graphroot")
		runroot  = flag.String("runroot", "", "runroot")
		driver   = flag.String("driver", "vfs", "graph driver")
		n        = flag.Int("images", 1000, "number of images")
		bases    = flag.Int("bases", 4, "number of base images (2 layers each)")
		baseSize = flag.Int("base-size", 64<<10, "bytes per base layer")
		unique   = flag.Int("unique", 150, "images with a layer of their own; the others reuse one of those layers with their own config")
		untag    = flag.Int("untag-every", 10, "leave every Nth image without a name (dangling); 0 = none")
	)
	flag.Parse()
	if err := run(context.Background(), *root, *runroot, *driver, *n, *bases, *baseSize, max(*unique, 1), *untag); err != nil {
		fmt.Fprintln(os.Stderr, "dfgen:", err)
		os.Exit(1)
	}
}

type blob struct {
	data []byte
	d    digest.Digest
}

func newBlob(data []byte) blob { return blob{data: data, d: digest.FromBytes(data)} }

func layerTar(name string, content []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(1700000000, 0)})
	_, _ = tw.Write(content)
	_ = tw.Close()
	return buf.Bytes()
}

func random(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	r.Read(b)
	return b
}

func run(ctx context.Context, root, runroot, driver string, n, bases, baseSize, unique, untag int) error {
	if root == "" || runroot == "" {
		return fmt.Errorf("-root and -runroot are required")
	}
	dir, err := os.MkdirTemp("", "dfgen-layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r := rand.New(rand.NewSource(1))
	writeBlob := func(b blob) error {
		p := filepath.Join(dir, "blobs", "sha256", b.d.Encoded())
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		return os.WriteFile(p, b.data, 0o644)
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	baseLayers := make([][2]blob, bases)
	for b := range baseLayers {
		for k := 0; k < 2; k++ {
			baseLayers[b][k] = newBlob(layerTar(fmt.Sprintf("base%d-%d", b, k), random(r, baseSize)))
			if err := writeBlob(baseLayers[b][k]); err != nil {
				return err
			}
		}
	}
	index := v1.Index{Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex}
	created := time.Unix(1700000000, 0).UTC()
	// Applying a layer costs a re-exec of this binary (chrootarchive), so
	// only `unique` images get a layer of their own; the rest share one of
	// those layer chains under a config of their own (distinct image IDs,
	// the same top layer — what rebuilt or re-tagged images look like).
	own := make([]blob, unique)
	for u := range own {
		own[u] = newBlob(layerTar(fmt.Sprintf("img%d", u), random(r, 1024+r.Intn(4096))))
	}
	for i := 0; i < n; i++ {
		base := baseLayers[(i%unique)%bases]
		layers := []blob{base[0], base[1], own[i%unique]}
		cfg := v1.Image{
			Created:  &created,
			Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
			RootFS:   v1.RootFS{Type: "layers"},
		}
		var descs []v1.Descriptor
		for k, l := range layers {
			cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.d)
			cfg.History = append(cfg.History, v1.History{Created: &created, CreatedBy: fmt.Sprintf("layer %d of image %d", k, i)})
			descs = append(descs, v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: l.d, Size: int64(len(l.data))})
			if err := writeBlob(l); err != nil {
				return err
			}
		}
		cfgJSON, _ := json.Marshal(cfg)
		cb := newBlob(cfgJSON)
		m := v1.Manifest{
			Versioned: imgspec.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
			Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cb.d, Size: int64(len(cfgJSON))},
			Layers: descs,
		}
		mJSON, _ := json.Marshal(m)
		mb := newBlob(mJSON)
		for _, b := range []blob{cb, mb} {
			if err := writeBlob(b); err != nil {
				return err
			}
		}
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: v1.MediaTypeImageManifest, Digest: mb.d, Size: int64(len(mJSON)),
			Annotations: map[string]string{v1.AnnotationRefName: fmt.Sprintf("img%d", i)},
		})
	}
	idx, _ := json.Marshal(index)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644); err != nil {
		return err
	}

	st, err := storage.GetStore(types.StoreOptions{GraphRoot: root, RunRoot: runroot, GraphDriverName: driver})
	if err != nil {
		return err
	}
	defer func() { _, _ = st.Shutdown(false) }()
	pc, err := signature.NewPolicyContext(&signature.Policy{Default: []signature.PolicyRequirement{signature.NewPRInsecureAcceptAnything()}})
	if err != nil {
		return err
	}
	defer func() { _ = pc.Destroy() }()
	for i := 0; i < n; i++ {
		src, err := layout.NewReference(dir, fmt.Sprintf("img%d", i))
		if err != nil {
			return err
		}
		name := fmt.Sprintf("localhost/bench/img%d:latest", i)
		dest, err := istorage.Transport.ParseStoreReference(st, name)
		if err != nil {
			return err
		}
		if _, err := copy.Image(ctx, pc, dest, src, &copy.Options{ReportWriter: io.Discard}); err != nil {
			return fmt.Errorf("copying image %d: %w", i, err)
		}
		if untag > 0 && i%untag == untag-1 {
			img, err := st.Image(name)
			if err != nil {
				return err
			}
			if err := st.RemoveNames(img.ID, []string{name}); err != nil {
				return err
			}
		}
	}
	fmt.Printf("dfgen: %d images over %d bases in %s\n", n, bases, root)
	return nil
}
