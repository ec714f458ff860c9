package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/jobs/shared/storeopen"
)

// newInfoCmd is `stowage info`: which store stowage opens, and why.
func newInfoCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "info",
		Short: "Show which container store stowage uses and why",
		Long: `Show the store stowage opens: graphroot, runroot, driver and driver options,
and where they come from. When podman is installed, stowage asks it
(podman info, cached until podman or any storage.conf changes) and passes it
only --root/--runroot/--storage-driver/--storage-opt and the policy's
[storage] keys; without podman, storage.conf is read as containers/storage
does. The JSON's "store" object uses podman info's field names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "json" && format != "table" {
				return fmt.Errorf("info: unknown --format %q (json or table)", format)
			}
			p, err := g.loadPolicy()
			if err != nil {
				return err
			}
			res, err := g.resolveStore(cmd.Context(), p)
			if err != nil {
				return err
			}
			out := newInfoOutput(g.storeOverrides(p), res)
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			return writeInfoTable(cmd.OutOrStdout(), out)
		},
	}
	c.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return c
}

// infoOutput is `stowage info --format json`.
type infoOutput struct {
	Store  infoStore  `json:"store"`
	Source infoSource `json:"source"`
}

// infoStore names the store with podman info's .store field names.
type infoStore struct {
	GraphRoot          string            `json:"graphRoot"`
	RunRoot            string            `json:"runRoot"`
	GraphDriverName    string            `json:"graphDriverName"`
	GraphDriverOptions []string          `json:"graphDriverOptions"`
	ImageStore         string            `json:"imageStore,omitempty"`
	TransientStore     bool              `json:"transientStore"`
	PullOptions        map[string]string `json:"pullOptions,omitempty"`
}

// infoSource says where the store came from.
type infoSource struct {
	Kind          string            `json:"kind"` // "podman" or "storage.conf"
	Description   string            `json:"description"`
	PodmanPath    string            `json:"podmanPath,omitempty"`
	PodmanVersion string            `json:"podmanVersion,omitempty"`
	ConfigFile    string            `json:"configFile,omitempty"`
	Cached        bool              `json:"cached"`
	CacheFile     string            `json:"cacheFile,omitempty"`
	Overrides     storeopen.Options `json:"overrides"`
	Notes         []string          `json:"notes,omitempty"`
}

func newInfoOutput(o storeopen.Options, res storeopen.Resolution) infoOutput {
	so := res.Options
	opts := so.GraphDriverOptions
	if opts == nil {
		opts = []string{}
	}
	desc := "storage.conf (podman not installed)"
	if res.Source == storeopen.SourcePodman {
		desc = "podman " + res.PodmanVersion + " info"
		if res.Cached {
			desc += " (cached)"
		}
	}
	return infoOutput{
		Store: infoStore{
			GraphRoot:          so.GraphRoot,
			RunRoot:            so.RunRoot,
			GraphDriverName:    so.GraphDriverName,
			GraphDriverOptions: opts,
			ImageStore:         so.ImageStore,
			TransientStore:     so.TransientStore,
			PullOptions:        so.PullOptions,
		},
		Source: infoSource{
			Kind:          res.Source,
			Description:   desc,
			PodmanPath:    res.PodmanPath,
			PodmanVersion: res.PodmanVersion,
			ConfigFile:    res.ConfigFile,
			Cached:        res.Cached,
			CacheFile:     res.CacheFile,
			Overrides:     o,
			Notes:         res.Notes,
		},
	}
}

// writeInfoTable prints the store for people.
func writeInfoTable(w io.Writer, out infoOutput) error {
	s := out.Store
	var b strings.Builder
	fmt.Fprintf(&b, "graphRoot:       %s\n", s.GraphRoot)
	fmt.Fprintf(&b, "runRoot:         %s\n", s.RunRoot)
	fmt.Fprintf(&b, "graphDriverName: %s\n", s.GraphDriverName)
	fmt.Fprintf(&b, "driver options:  %s\n", strings.Join(s.GraphDriverOptions, " "))
	if s.ImageStore != "" {
		fmt.Fprintf(&b, "imageStore:      %s\n", s.ImageStore)
	}
	if s.TransientStore {
		fmt.Fprintf(&b, "transientStore:  true\n")
	}
	fmt.Fprintf(&b, "source:          %s\n", out.Source.Description)
	if out.Source.ConfigFile != "" {
		fmt.Fprintf(&b, "configFile:      %s\n", out.Source.ConfigFile)
	}
	if args := out.Source.Overrides.PodmanArgs(); len(args) > 0 {
		fmt.Fprintf(&b, "overrides:       %s\n", strings.Join(args, " "))
	}
	for _, n := range out.Source.Notes {
		fmt.Fprintf(&b, "note:            %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
