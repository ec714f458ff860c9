package quadlet

import (
	"fmt"
	"strings"
	"unicode"
)

// UnitFile is a parsed systemd-style unit file as Quadlet reads it: groups
// of key/value lines in file order. Drop-ins are merged by appending their
// lines, so the last value of a key wins. It does no I/O.
type UnitFile struct {
	// Name is the file name ("web.container"), which decides the unit type
	// and how other units refer to it.
	Name string
	// Path is where the file was read, used to resolve relative paths
	// (Yaml=); "" for a unit parsed from memory.
	Path   string
	groups map[string][]entry
}

type entry struct{ key, value string }

// ParseUnit parses unit file text the way podman's quadlet parser does:
// lines are trimmed; empty lines and lines starting with '#' or ';' are
// comments; a line ending in '\' continues on the next line (comment lines
// inside a continuation are skipped); "[Group]" starts a group; "Key=Value"
// adds a value with the key's trailing and the value's leading blanks
// removed. Anything else is an error naming the line.
func ParseUnit(name, data string) (*UnitFile, error) {
	u := &UnitFile{Name: name, groups: map[string][]entry{}}
	lines := strings.Split(strings.TrimSuffix(data, "\n"), "\n")
	group, inGroup := "", false
	pending := ""
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if isComment(line) {
			continue // also inside a continuation, as podman does
		}
		if strings.HasSuffix(line, `\`) {
			line = line[:len(line)-1]
			if i != len(lines)-1 {
				pending += line
				continue
			}
		}
		line, pending = pending+line, ""
		switch {
		case isComment(line):
			// "\" alone on the last line leaves an empty line
		case isGroupLine(line):
			name := line[1:strings.Index(line, "]")]
			if name == "" || strings.ContainsAny(name, "[]") || strings.IndexFunc(name, unicode.IsControl) >= 0 {
				return nil, fmt.Errorf("line %d: invalid group name %q", i+1, name)
			}
			group, inGroup = name, true
		case strings.IndexByte(line, '=') > 0:
			if !inGroup {
				return nil, fmt.Errorf("line %d: key file does not start with a group", i+1)
			}
			k, v, _ := strings.Cut(line, "=")
			k = strings.TrimRightFunc(k, unicode.IsSpace)
			if k == "" || k[0] == ' ' {
				return nil, fmt.Errorf("line %d: invalid key name %q", i+1, k)
			}
			v = strings.TrimLeftFunc(v, unicode.IsSpace)
			u.groups[group] = append(u.groups[group], entry{k, v})
		default:
			return nil, fmt.Errorf("line %d: %q is not a key-value pair, group, or comment", i+1, line)
		}
	}
	return u, nil
}

func isComment(line string) bool {
	return line == "" || line[0] == '#' || line[0] == ';'
}

// isGroupLine reports whether line is "[Name]" followed only by blanks.
func isGroupLine(line string) bool {
	if line == "" || line[0] != '[' {
		return false
	}
	end := strings.IndexByte(line, ']')
	return end >= 0 && strings.Trim(line[end+1:], " \t") == ""
}

// Merge appends the lines of a drop-in to u, so its values come last.
func (u *UnitFile) Merge(dropin *UnitFile) {
	for g, es := range dropin.groups {
		u.groups[g] = append(u.groups[g], es...)
	}
}

// Lookup returns the last value of key in group with trailing blanks
// removed and one pair of surrounding double quotes stripped, like podman's
// UnitFile.Lookup. An empty value counts as set.
func (u *UnitFile) Lookup(group, key string) (string, bool) {
	es := u.groups[group]
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].key == key {
			v := strings.TrimRightFunc(es[i].value, unicode.IsSpace)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// LookupAll returns every value of key in group; an empty value discards
// the values before it (systemd's reset rule). Values are not unquoted.
func (u *UnitFile) LookupAll(group, key string) []string {
	var out []string
	for _, e := range u.groups[group] {
		if e.key != key {
			continue
		}
		if e.value == "" {
			out = nil
			continue
		}
		out = append(out, e.value)
	}
	return out
}

// LookupAllWords splits every value of key into whitespace-separated
// words, honouring single and double quotes and backslash escapes (as
// podman's LookupAllStrv and LookupAllArgs do for Yaml= and PodmanArgs=).
func (u *UnitFile) LookupAllWords(group, key string) []string {
	var out []string
	for _, v := range u.LookupAll(group, key) {
		out = append(out, splitWords(v)...)
	}
	return out
}

// splitWords splits s at unquoted blanks, removing quotes and backslashes.
func splitWords(s string) []string {
	var (
		words []string
		cur   strings.Builder
		quote rune
		in    bool // inside a word
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc, in = true, true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case unicode.IsSpace(r):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// TemplateParts splits "base@instance.ext": it returns base, instance and
// whether the name contains '@' at all ("x@.container" is a template with
// an empty instance).
func TemplateParts(name string) (base, instance string, isTemplate bool) {
	stem := strings.TrimSuffix(name, extOf(name))
	base, instance, isTemplate = strings.Cut(stem, "@")
	return base, instance, isTemplate
}

// DropinDirs returns the drop-in directory names (relative to a search
// path) that podman 5/6 reads for a unit named name, most specific first:
// "name.d", then for an instance "base@.ext.d", then for every dash prefix
// of the base from the longest "a-b-.ext.d" (and "a-b-@.ext.d" for
// templates), and last the type-wide "ext.d" ("container.d").
func DropinDirs(name string) []string {
	base, instance, isTemplate := TemplateParts(name)
	ext := extOf(name)
	broad := []string{strings.TrimPrefix(ext, ".") + ".d"}
	parts := strings.Split(base, "-")
	for i := 1; i < len(parts); i++ {
		prefix := strings.Join(parts[:i], "-") + "-"
		broad = append(broad, prefix+ext+".d")
		if isTemplate {
			broad = append(broad, prefix+"@"+ext+".d")
		}
	}
	if instance != "" {
		broad = append(broad, base+"@"+ext+".d")
	}
	broad = append(broad, name+".d")
	out := make([]string, len(broad))
	for i, d := range broad {
		out[len(broad)-1-i] = d
	}
	return out
}

// extOf is filepath.Ext for a bare file name.
func extOf(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}
