package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/stowage/stowage/policy"
)

// NodeExporterDir is where Debian's (and the upstream default of)
// prometheus-node-exporter's textfile collector reads *.prom files.
const NodeExporterDir = "/var/lib/prometheus/node-exporter"

// TextfileName is the file written there.
const TextfileName = "stowage.prom"

// ResolveTextfile turns the policy's [metrics] textfile into a path: ""
// when off. "auto" is NodeExporterDir/stowage.prom in system mode when that
// directory exists (it is never created: no node exporter, no file) and off
// in user mode; why says why it is off. nodeExporterDir overrides
// NodeExporterDir when not empty (tests).
func ResolveTextfile(t policy.Textfile, system bool, nodeExporterDir string) (path, why string) {
	switch {
	case t == "":
		return "", `[metrics] textfile = ""`
	case t != policy.TextfileAuto:
		return string(t), ""
	case !system:
		return "", "user mode: textfile = \"auto\" writes no file (set a path to collect a user's metrics)"
	}
	dir := nodeExporterDir
	if dir == "" {
		dir = NodeExporterDir
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", dir + " does not exist (is prometheus-node-exporter installed?)"
	}
	return filepath.Join(dir, TextfileName), ""
}

// WriteTextfile writes g's metrics to path atomically: a temporary file in
// the same directory (named so the collector's *.prom glob skips it),
// fsynced, made 0644 and renamed over path; the directory is fsynced too.
// The directory must exist.
func WriteTextfile(path string, g prometheus.Gatherer) (err error) {
	mfs, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gathering metrics: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriter(f)
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil && !errors.Is(serr, os.ErrInvalid) {
			return fmt.Errorf("writing %s: syncing %s: %w", path, dir, serr)
		}
	}
	return nil
}
