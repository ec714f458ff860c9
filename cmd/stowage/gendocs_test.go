package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/stowage/stowage/policy"
)

func TestGenDocs(t *testing.T) {
	dir := t.TempDir()
	root := newRootCmd(nil)
	date := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	if err := genDocs(root, dir, date); err != nil {
		t.Fatal(err)
	}

	// One man page per visible command, named as cobra/doc names them.
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root || c.IsAdditionalHelpTopicCommand() {
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		b, err := os.ReadFile(filepath.Join(dir, "man1", name))
		if err != nil {
			t.Errorf("man page for %q: %v", c.CommandPath(), err)
		} else if !strings.Contains(string(b), ".TH \"STOWAGE\" \"1\"") {
			t.Errorf("%s: no .TH header", name)
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if _, err := os.Stat(filepath.Join(dir, "man1", "stowage-gendocs.1")); err == nil {
		t.Error("hidden gendocs command got a man page")
	}

	// stowage.toml(5) names every table and key of the schema.
	page, err := os.ReadFile(filepath.Join(dir, "man5", "stowage.toml.5"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(page)
	if !strings.HasPrefix(text, `.TH "STOWAGE.TOML" "5" "Jan 2026"`) {
		t.Errorf("stowage.toml.5 header: %.60q", text)
	}
	secs, err := policy.Docs()
	if err != nil {
		t.Fatal(err)
	}
	nkeys := 0
	for _, s := range secs {
		if s.Name != "" && len(s.Keys) > 0 && !strings.Contains(text, "["+roff(s.Name)+"]") {
			t.Errorf("stowage.toml.5 lacks section [%s]", s.Name)
		}
		for _, k := range s.Keys {
			short := strings.TrimPrefix(k.Key, s.Name+".")
			if !strings.Contains(text, `\fB`+roff(short)+`\fR (\fI`+roff(k.Type)+`\fR`) {
				t.Errorf("stowage.toml.5 lacks key %s", k.Key)
			}
			nkeys++
		}
	}
	if nkeys < 30 {
		t.Errorf("only %d keys documented", nkeys)
	}

	for path, marker := range map[string]string{
		"completions/bash/stowage":      "__start_stowage",
		"completions/zsh/_stowage":      "#compdef stowage",
		"completions/fish/stowage.fish": "complete -c stowage",
	} {
		b, err := os.ReadFile(filepath.Join(dir, path))
		if err != nil {
			t.Errorf("completion: %v", err)
			continue
		}
		if !strings.Contains(string(b), marker) {
			t.Errorf("%s lacks %q", path, marker)
		}
	}
}

func TestRoffEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`.dot`:      `\&.dot`,
		`'quote`:    `\&'quote`,
		`a\b`:       `a\eb`,
		`--storage`: `\-\-storage`,
	} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}
