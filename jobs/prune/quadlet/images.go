package quadlet

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Quadlet group names that hold image keys.
const (
	groupContainer = "Container"
	groupImage     = "Image"
	groupBuild     = "Build"
	groupVolume    = "Volume"
	groupPod       = "Pod"
	groupKube      = "Kube"
)

// Use is one image a unit references, as written (after resolving
// Image=NAME.image and Image=NAME.build to the image that unit produces,
// and expanding an instance's %i).
type Use struct {
	Image string // image reference text
	Unit  string // path (or name) of the unit that uses it
}

// ErrUnresolved marks a reference to a .image or .build unit that is not
// there (or names no image): the generator fails that unit, and prune
// cannot know which image it meant.
var ErrUnresolved = errors.New("unresolvable Quadlet image reference")

// Images returns the images the units reference: Image= of .container
// (and Mount=type=image sources), Image= and ImageTag= of .image, every
// ImageTag= of .build, Image= of a .volume with Driver=image,
// --infra-image in a .pod's PodmanArgs=, and the image: fields of a .kube's
// Yaml= files, which readFile reads. Errors are joined; the uses found
// are returned with them.
func Images(units []*UnitFile, readFile func(path string) ([]byte, error)) ([]Use, error) {
	byName := make(map[string]*UnitFile, len(units))
	for _, u := range units {
		byName[u.Name] = u
	}
	var (
		uses []Use
		errs []error
	)
	for _, u := range units {
		unit := u.Path
		if unit == "" {
			unit = u.Name
		}
		add := func(image string) {
			if image = expandSpecifiers(u.Name, image); image != "" {
				uses = append(uses, Use{Image: image, Unit: unit})
			}
		}
		resolveAdd := func(ref string, suffixes ...string) {
			img, err := resolveRef(byName, ref, suffixes)
			if err != nil {
				errs = append(errs, fmt.Errorf("quadlet: %s: %w", unit, err))
				return
			}
			add(img)
		}
		switch extOf(u.Name) {
		case ".container":
			if img, ok := u.Lookup(groupContainer, "Image"); ok && img != "" {
				resolveAdd(img, ".build", ".image")
			}
			for _, m := range u.LookupAllWords(groupContainer, "Mount") {
				src, err := imageMountSource(m)
				if err != nil {
					errs = append(errs, fmt.Errorf("quadlet: %s: Mount=%s: %w", unit, m, err))
				} else if src != "" {
					resolveAdd(src, ".image")
				}
			}
		case ".image":
			if img, ok := u.Lookup(groupImage, "Image"); ok {
				add(img)
			}
			if tag, ok := u.Lookup(groupImage, "ImageTag"); ok {
				add(tag)
			}
		case ".build":
			for _, tag := range u.LookupAll(groupBuild, "ImageTag") {
				add(strings.TrimSpace(tag))
			}
		case ".volume":
			if d, _ := u.Lookup(groupVolume, "Driver"); d == "image" {
				if img, ok := u.Lookup(groupVolume, "Image"); ok && img != "" {
					resolveAdd(img, ".build", ".image")
				}
			}
		case ".pod":
			for _, img := range infraImages(u.LookupAllWords(groupPod, "PodmanArgs")) {
				add(img)
			}
		case ".kube":
			for _, y := range u.LookupAllWords(groupKube, "Yaml") {
				if !filepath.IsAbs(y) && !strings.HasPrefix(y, "%") && u.Path != "" {
					y = filepath.Join(filepath.Dir(u.Path), y)
				}
				data, err := readFile(y)
				if err != nil {
					errs = append(errs, fmt.Errorf("quadlet: %s: Yaml=: %w", unit, err))
					continue
				}
				imgs, err := KubeImages(data)
				if err != nil {
					errs = append(errs, fmt.Errorf("quadlet: %s: %s: %w", unit, y, err))
					continue
				}
				for _, img := range imgs {
					add(img)
				}
			}
		}
	}
	return uses, errors.Join(errs...)
}

// resolveRef follows ref when it ends in one of suffixes to the image the
// named unit produces: ImageTag= (else Image=) of a .image unit, the first
// ImageTag= of a .build unit, as podman's generator does.
func resolveRef(byName map[string]*UnitFile, ref string, suffixes []string) (string, error) {
	for _, s := range suffixes {
		if !strings.HasSuffix(ref, s) {
			continue
		}
		u, ok := byName[ref]
		if !ok {
			return "", fmt.Errorf("%w: no unit %s", ErrUnresolved, ref)
		}
		var img string
		switch s {
		case ".image":
			img, _ = u.Lookup(groupImage, "Image")
			if tag, ok := u.Lookup(groupImage, "ImageTag"); ok && tag != "" {
				img = tag
			}
		case ".build":
			if tags := u.LookupAll(groupBuild, "ImageTag"); len(tags) > 0 {
				img = tags[0]
			}
		}
		if img == "" {
			return "", fmt.Errorf("%w: %s names no image", ErrUnresolved, ref)
		}
		return img, nil
	}
	return ref, nil
}

// imageMountSource returns the source of a Mount= value of type image, or
// "" for other mounts. The value is comma-separated key=value pairs, CSV
// quoted, as podman parses it.
func imageMountSource(mount string) (string, error) {
	r := csv.NewReader(strings.NewReader(mount))
	fields, err := r.Read()
	if err != nil {
		return "", fmt.Errorf("parsing mount: %w", err)
	}
	var typ, src string
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "type":
			typ = v
		case "source", "src":
			src = v
		}
	}
	if typ != "image" {
		return "", nil
	}
	return src, nil
}

// infraImages returns the values of --infra-image in podman arguments.
func infraImages(args []string) []string {
	var out []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--infra-image="); ok {
			out = append(out, v)
		} else if a == "--infra-image" && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

// KubeImages returns every string value of an "image" key anywhere in a
// (multi-document) Kubernetes YAML file: containers, initContainers and
// ephemeral containers of pods, deployments, daemon sets and jobs alike.
// Malformed YAML is an error.
func KubeImages(data []byte) ([]string, error) {
	var out []string
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("kube yaml: %w", err)
		}
		out = appendNodeImages(out, &doc)
	}
}

func appendNodeImages(out []string, n *yaml.Node) []string {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "image" && v.Kind == yaml.ScalarNode && v.Value != "" {
				out = append(out, v.Value)
			}
		}
	}
	for _, c := range n.Content {
		out = appendNodeImages(out, c)
	}
	return out
}

// expandSpecifiers replaces the systemd specifiers that depend on the unit
// name (%i and %I: instance, %p and %P: prefix, %%: '%') for an instance
// unit "base@instance.ext". Other specifiers, and %i in a template that
// has no instance, are left in place: systemd expands them at start.
func expandSpecifiers(unitName, s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	base, instance, _ := TemplateParts(unitName)
	if instance == "" {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case 'i', 'I':
			b.WriteString(instance)
		case 'p', 'P':
			b.WriteString(base)
		case '%':
			b.WriteString("%%") // keep it escaped: the result is still unit text
		default:
			b.WriteString(s[i : i+2])
		}
		i++
	}
	return b.String()
}
