// Command dfgrow grows a store made by dfgen to many more images, fast, for
// test/bench/podmans.sh. dfgen copies every image with containers/image,
// and containers/storage rewrites the whole images.json a few times per
// image: 10,000 images take well over an hour. dfgrow writes the images
// dfgen would have written for images K..N-1 (K = images already in the
// store) directly: the same config and manifest bytes (dfgen's image j is
// image j%unique with "image j" in its history), the same top layer, the
// same names, every untag-every-th one without a name, then images.json
// once. No layer is added: dfgen's later images reuse earlier layers.
// Run it only on a store no process has open.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/storage"
)

func main() {
	var (
		root   = flag.String("root", "", "graphroot of a store made by dfgen")
		driver = flag.String("driver", "vfs", "graph driver the store was made with")
		n      = flag.Int("images", 10000, "number of images wanted in total")
		unique = flag.Int("unique", 150, "dfgen's -unique")
		untag  = flag.Int("untag-every", 10, "dfgen's -untag-every")
	)
	flag.Parse()
	if err := run(*root, *driver, *n, max(*unique, 1), *untag); err != nil {
		fmt.Fprintln(os.Stderr, "dfgrow:", err)
		os.Exit(1)
	}
}

func name(i int) string { return fmt.Sprintf("localhost/bench/img%d:latest", i) }

// bigDataFile is the file name containers/storage keeps a big-data item
// under: the key itself when it is made of [.0-9a-z] only, else "=" and the
// key in base64.
func bigDataFile(key string) string {
	for _, c := range key {
		if c != '.' && (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return "=" + base64.StdEncoding.EncodeToString([]byte(key))
		}
	}
	return key
}

func run(root, driver string, n, unique, untag int) error {
	if root == "" {
		return fmt.Errorf("-root is required")
	}
	dir := filepath.Join(root, driver+"-images")
	index := filepath.Join(dir, "images.json")
	raw, err := os.ReadFile(index)
	if err != nil {
		return err
	}
	var images []storage.Image
	if err := json.Unmarshal(raw, &images); err != nil {
		return fmt.Errorf("%s: %w", index, err)
	}
	k := len(images)
	if k < unique {
		return fmt.Errorf("store has %d images, fewer than -unique %d: make it with dfgen -images >= %d", k, unique, unique)
	}
	// Templates: dfgen's images 0..unique-1 by the name they had.
	tmpl := make([]*storage.Image, unique)
	ids := make(map[string]bool, n)
	for i := range images {
		img := &images[i]
		ids[img.ID] = true
		for t := 0; t < unique; t++ {
			if len(img.NamesHistory) > 0 && img.NamesHistory[0] == name(t) {
				tmpl[t] = img
			}
		}
	}
	for t, img := range tmpl {
		if img == nil {
			return fmt.Errorf("no image named %s in %s: not a dfgen store", name(t), root)
		}
	}
	for j := k; j < n; j++ {
		img, err := clone(dir, tmpl[j%unique], j)
		if err != nil {
			return fmt.Errorf("image %d: %w", j, err)
		}
		if ids[img.ID] {
			return fmt.Errorf("image %d: ID %s already in the store", j, img.ID)
		}
		ids[img.ID] = true
		if untag > 0 && j%untag == untag-1 {
			img.Names = nil
		}
		images = append(images, *img)
	}
	out, err := json.Marshal(images)
	if err != nil {
		return err
	}
	tmp := index + ".dfgrow"
	if err := os.WriteFile(tmp, out, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, index); err != nil {
		return err
	}
	fmt.Printf("dfgrow: %d -> %d images in %s\n", k, len(images), root)
	return nil
}

// clone writes the big data of dfgen's image j, made from template t (the
// same layers), and returns its record.
func clone(dir string, t *storage.Image, j int) (*storage.Image, error) {
	read := func(key string) ([]byte, error) {
		return os.ReadFile(filepath.Join(dir, t.ID, bigDataFile(key)))
	}
	cfgKey := "sha256:" + t.ID
	cfgRaw, err := read(cfgKey)
	if err != nil {
		return nil, err
	}
	manRaw, err := read("manifest")
	if err != nil {
		return nil, err
	}
	var cfg v1.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, err
	}
	for k := range cfg.History {
		cfg.History[k].CreatedBy = fmt.Sprintf("layer %d of image %d", k, j)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cd := digest.FromBytes(cfgJSON)
	var man v1.Manifest
	if err := json.Unmarshal(manRaw, &man); err != nil {
		return nil, err
	}
	man.Config.Digest, man.Config.Size = cd, int64(len(cfgJSON))
	manJSON, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	md := digest.FromBytes(manJSON)
	img := &storage.Image{
		ID: cd.Encoded(), Digest: md, Names: []string{name(j)}, NamesHistory: []string{name(j)},
		TopLayer: t.TopLayer, Metadata: t.Metadata, Created: t.Created,
		BigDataSizes: map[string]int64{}, BigDataDigests: map[string]digest.Digest{},
	}
	if err := os.Mkdir(filepath.Join(dir, img.ID), 0o700); err != nil {
		return nil, err
	}
	for _, key := range t.BigDataNames {
		var data []byte
		var newKey string
		switch {
		case key == cfgKey:
			newKey, data = "sha256:"+img.ID, cfgJSON
		case key == "manifest":
			newKey, data = key, manJSON
		case strings.HasPrefix(key, storage.ImageDigestManifestBigDataNamePrefix):
			newKey, data = storage.ImageDigestManifestBigDataNamePrefix+"-"+md.String(), manJSON
		default:
			return nil, fmt.Errorf("template %s: unexpected big-data item %q", t.ID, key)
		}
		if err := os.WriteFile(filepath.Join(dir, img.ID, bigDataFile(newKey)), data, 0o600); err != nil {
			return nil, err
		}
		img.BigDataNames = append(img.BigDataNames, newKey)
		img.BigDataSizes[newKey] = int64(len(data))
		img.BigDataDigests[newKey] = digest.FromBytes(data)
	}
	return img, nil
}
