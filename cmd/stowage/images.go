package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/inventory"
	"github.com/stowage/stowage/jobs/shared/report"
)

// newImagesCmd is `stowage images`: every image with its exact accounting.
func newImagesCmd(g *globals) *cobra.Command {
	var (
		format string
		all    bool
	)
	c := &cobra.Command{
		Use:   "images",
		Short: "List images with their full, unique and shared sizes",
		Long: `List images like podman images, adding the bytes that removing each image
alone would free (UNIQUE), the bytes it shares with others, and how many
containers use it. Sizes are bytes on disk (allocated blocks, each hard-linked
file once; see stowage df), so SIZE differs from podman's diff sizes.
--format json|table|GO-TEMPLATE; a template is applied to
each image (fields: .ID .Names .Digest .Digests .SizeBytes .UniqueBytes
.SharedBytes .Containers .Dangling .Intermediate .ReadOnly .Created; functions:
json, size, ago). As podman images, intermediate images are listed with --all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			a, err := g.account(cmd.Context(), p, true)
			if err != nil {
				return err
			}
			imgs := make([]inventory.ImageUsage, 0, len(a.PerImage))
			for _, i := range a.PerImage {
				if all || !i.Intermediate {
					imgs = append(imgs, i)
				}
			}
			w := cmd.OutOrStdout()
			switch format {
			case "json":
				return writeJSON(w, imgs)
			case "table", "":
				return writeImagesTable(w, imgs, time.Now())
			default:
				return writeImagesTemplate(w, format, imgs)
			}
		},
	}
	c.Flags().StringVar(&format, "format", "table", "output format: table, json or a Go template")
	c.Flags().BoolVarP(&all, "all", "a", false, "show intermediate images too (as podman images -a)")
	return c
}

// splitName splits a reference into repository and tag as podman images
// shows them.
func splitName(name string) (repo, tag string) {
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		return name[:i], "<none>"
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[:i], name[i+1:]
	}
	return name, "latest"
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return units.HumanDuration(now.Sub(t)) + " ago"
}

// writeImagesTable prints one row per name (one <none> row for an untagged
// image), like podman images, plus the exact accounting columns.
func writeImagesTable(w io.Writer, imgs []inventory.ImageUsage, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tUNIQUE\tSHARED\tCONTAINERS")
	for _, img := range imgs {
		names := img.Names
		if len(names) == 0 {
			names = []string{"<none>:<none>"}
		}
		id := img.ID
		if len(id) > 12 {
			id = id[:12]
		}
		for _, n := range names {
			repo, tag := splitName(n)
			if n == "<none>:<none>" {
				repo, tag = "<none>", "<none>"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", repo, tag, id, ago(now, img.Created),
				report.HumanSize(img.SizeBytes), report.HumanSize(img.UniqueBytes), report.HumanSize(img.SharedBytes), img.Containers)
		}
	}
	return tw.Flush()
}

// writeImagesTemplate applies a Go template to each image, one per line.
// A leading "table " (podman's convention) is accepted and ignored.
func writeImagesTemplate(w io.Writer, format string, imgs []inventory.ImageUsage) error {
	format = strings.TrimPrefix(format, "table ")
	tmpl, err := template.New("images").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"size": report.HumanSize,
		"ago":  func(t time.Time) string { return ago(time.Now(), t) },
	}).Parse(format)
	if err != nil {
		return fmt.Errorf("images: bad --format template: %w", err)
	}
	for i := range imgs {
		if err := tmpl.Execute(w, &imgs[i]); err != nil {
			return fmt.Errorf("images: executing template: %w", err)
		}
		if _, err := io.WriteString(w, "\n"); err != nil {
			return err
		}
	}
	return nil
}
