package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText prints a run as `stowage report RUN` does: a header line, the
// summary, the error, then the worker's report as indented JSON.
func (r *Run) WriteText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "run %s: %s %s", r.ID, r.Job, r.Outcome)
	if len(r.Args) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(r.Args, " "))
	}
	if r.DryRun {
		fmt.Fprint(&b, " (dry run)")
	}
	fmt.Fprintln(&b)
	if r.Summary != "" {
		fmt.Fprintln(&b, r.Summary)
	}
	if r.Error != "" {
		fmt.Fprintln(&b, "error:", r.Error)
	}
	if len(r.Report) > 0 {
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r.Report); err != nil {
			return fmt.Errorf("encoding the report: %w", err)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}
