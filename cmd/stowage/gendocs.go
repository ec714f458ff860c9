package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/stowage/stowage/policy"
)

// newGenDocsCmd is the hidden `stowage gendocs DIR` used by `make install`:
// man pages and shell completions are generated from the command tree and
// the policy schema, so they cannot drift from the code.
func newGenDocsCmd(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:    "gendocs DIR",
		Short:  "Write man pages and shell completions into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genDocs(root, args[0], docDate())
		},
	}
}

// genDocs writes DIR/man1/*.1, DIR/man5/stowage.toml.5 and
// DIR/completions/{bash/stowage,zsh/_stowage,fish/stowage.fish}.
func genDocs(root *cobra.Command, dir string, date time.Time) error {
	man1 := filepath.Join(dir, "man1")
	man5 := filepath.Join(dir, "man5")
	comp := filepath.Join(dir, "completions")
	for _, d := range []string{man1, man5, filepath.Join(comp, "bash"), filepath.Join(comp, "zsh"), filepath.Join(comp, "fish")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("gendocs: %w", err)
		}
	}
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{
		Title:   "STOWAGE",
		Section: "1",
		Date:    &date,
		Source:  "stowage " + version,
		Manual:  "stowage manual",
	}
	if err := doc.GenManTree(root, hdr, man1); err != nil {
		return fmt.Errorf("gendocs: man pages: %w", err)
	}
	page, err := policyManPage(date)
	if err != nil {
		return fmt.Errorf("gendocs: %w", err)
	}
	if err := os.WriteFile(filepath.Join(man5, "stowage.toml.5"), page, 0o644); err != nil {
		return fmt.Errorf("gendocs: %w", err)
	}
	completions := []struct {
		path string
		gen  func(*os.File) error
	}{
		{filepath.Join(comp, "bash", "stowage"), func(f *os.File) error { return root.GenBashCompletionV2(f, true) }},
		{filepath.Join(comp, "zsh", "_stowage"), func(f *os.File) error { return root.GenZshCompletion(f) }},
		{filepath.Join(comp, "fish", "stowage.fish"), func(f *os.File) error { return root.GenFishCompletion(f, true) }},
	}
	for _, c := range completions {
		if err := writeFileWith(c.path, c.gen); err != nil {
			return fmt.Errorf("gendocs: completion: %w", err)
		}
	}
	return nil
}

// writeFileWith creates path and lets gen fill it.
func writeFileWith(path string, gen func(*os.File) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	return gen(f)
}

// docDate honours SOURCE_DATE_EPOCH so that packages build reproducibly.
func docDate() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC()
}

// policyManPage renders stowage.toml(5) from the policy schema documentation.
func policyManPage(date time.Time) ([]byte, error) {
	secs, err := policy.Docs()
	if err != nil {
		return nil, err
	}
	if len(secs) == 0 {
		return nil, errors.New("policy documentation is empty")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, ".TH \"STOWAGE.TOML\" \"5\" \"%s\" \"stowage %s\" \"stowage manual\"\n", date.Format("Jan 2006"), roff(version))
	b.WriteString(`.SH NAME
stowage.toml \- stowage policy file
.SH SYNOPSIS
.B /etc/stowage/stowage.toml
(system service)
.br
.B $XDG_CONFIG_HOME/stowage/stowage.toml
(per-user service)
.SH DESCRIPTION
One TOML file configures what the stowage daemon and the
.B stowage run
command do to a Podman host's container storage. It is read over the
built-in defaults, so a file only needs the keys it changes. Unknown keys
and invalid values are errors; every problem is reported at once with its
file, line and column. The shipped file lists every key with its default.
.PP
.B systemctl reload stowage
(or
.BR "stowage reload" )
re-reads the policy. A policy that fails to load is rejected, the daemon
keeps running on the policy it had, and the journal says why.
.PP
.B stowage policy
checks and prints the effective policy.
.SH VALUE SYNTAX
.TP
.I duration
A Go duration string: "90s", "15m", "24h", "720h"; "0" means zero or off.
.TP
.I size or percentage
A size with a decimal or binary unit ("500MB", "20GiB") or a percentage of
the filesystem that holds the graph root ("25%"); "0" means none.
.TP
.I percentage
A number from 0 to 100 followed by "%".
.TP
.I schedule
A 5-field cron specification ("30 3 * * *") or @hourly, @daily, @weekly,
@monthly, "@every 6h".
`)
	for _, s := range secs {
		if len(s.Keys) == 0 {
			continue
		}
		switch {
		case s.Name == "":
			b.WriteString(".SH TOP-LEVEL KEYS\n")
		case strings.Contains(s.Name, "."):
			fmt.Fprintf(&b, ".SH [[%s]]\n", roff(s.Name))
		default:
			fmt.Fprintf(&b, ".SH [%s]\n", roff(s.Name))
		}
		if s.Name != "" {
			fmt.Fprintf(&b, "%s\n", roff(s.Description))
		}
		for _, k := range s.Keys {
			short := k.Key
			if s.Name != "" {
				short = strings.TrimPrefix(k.Key, s.Name+".")
			}
			fmt.Fprintf(&b, ".TP\n\\fB%s\\fR (\\fI%s\\fR", roff(short), roff(k.Type))
			if k.Default != "" {
				fmt.Fprintf(&b, ", default \\fB%s\\fR", roff(k.Default))
			}
			b.WriteString(")\n")
			fmt.Fprintf(&b, "%s\n", roff(k.Description))
		}
	}
	b.WriteString(`.SH EXAMPLE
.nf
version = 1

[prune]
quota = "20GiB"
keep = ["registry.example.com/base/*"]

[[refresh.rule]]
match = "docker.io/library/*"
mode = "pull"
.fi
.SH FILES
.TP
.B /etc/stowage/stowage.toml
System policy (a configuration file the package never overwrites).
.TP
.B $XDG_CONFIG_HOME/stowage/stowage.toml
Per-user policy; falls back to the system policy's defaults.
.SH SEE ALSO
.BR stowage (1),
.BR containers-storage.conf (5),
.BR containers-policy.json (5),
.BR containers-registries.conf (5)
`)
	return b.Bytes(), nil
}

// roff escapes text for a roff body line.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
