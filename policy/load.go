package policy

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/stowage/stowage/policy/regfile"
)

// EmbeddedSource names the built-in default policy in Sources.
const EmbeddedSource = "(embedded default)"

// SystemPath is the administrator's policy file for system mode (and the
// fallback for users without one of their own).
const SystemPath = "/etc/stowage/stowage.toml"

// LoadOptions says where to look for the policy.
type LoadOptions struct {
	// Path is --policy; empty means the standard lookup.
	Path string
	// System selects /etc/stowage/stowage.toml; otherwise the user's
	// $XDG_CONFIG_HOME/stowage/stowage.toml is tried first.
	System bool
}

// Problem is one thing wrong with a policy file, at a position.
type Problem struct {
	Pos
	Msg string
}

func (p Problem) String() string {
	if p.Line == 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
}

// Error lists every problem found in the policy files, in file order.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Files returns the policy file and its drop-ins in the order they apply.
// A missing main file is left out (the embedded default stands in for it).
func Files(o LoadOptions) ([]string, error) {
	main := o.Path
	if main == "" {
		main = SystemPath
		if !o.System {
			if user, err := userPath(); err == nil && exists(user) {
				main = user
			}
		}
	} else if !exists(main) {
		return nil, fmt.Errorf("policy file %s: %w", main, os.ErrNotExist)
	}
	var files []string
	if exists(main) {
		files = append(files, main)
	}
	dropins, err := listDropins(main + ".d")
	if err != nil {
		return nil, err
	}
	return append(files, dropins...), nil
}

// listDropins returns the *.toml files of a drop-in directory, sorted. A
// missing directory has none; one that cannot be read (a permission
// problem, not a directory) is an error naming it: its rules must not
// silently drop out of the policy.
func listDropins(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy drop-in directory %s cannot be read (its drop-ins would be left out): %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if ok, _ := filepath.Match("*.toml", e.Name()); ok {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func userPath() (string, error) {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "stowage", "stowage.toml"), nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Load returns the effective policy — the embedded default, then the policy
// file, then its drop-ins in lexical order — and the sources it came from.
// Every problem in every file is reported at once in an *Error.
func Load(o LoadOptions) (*Policy, []string, error) {
	s, err := LoadSnapshot(o)
	if err != nil {
		return nil, nil, err
	}
	return s.Policy, s.Files(), nil
}

// LoadSnapshot is Load keeping the documents as read, so that the very same
// policy can be handed to another process (see Snapshot).
func LoadSnapshot(o LoadOptions) (*Snapshot, error) {
	files, err := Files(o)
	if err != nil {
		return nil, err
	}
	srcs := make([]Source, 0, len(files))
	for _, f := range files {
		data, err := readRegular(f)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, Source{Name: f, Data: data})
	}
	p, err := Parse(srcs...)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Policy: p, Sources: srcs}, nil
}

// ErrNotRegular is returned for a policy path that is not a regular file
// (a FIFO, device or socket would block or never end a read).
var ErrNotRegular = regfile.ErrNotRegular

// MaxFileSize bounds a policy file or drop-in; real ones are a few KiB.
const MaxFileSize = 1 << 20

// MaxNesting bounds how deep tables (dotted keys), arrays and inline tables
// nest in a policy (stowage's schema needs four levels). The TOML decoder's
// memory and time grow with the square of the nesting depth, so deeper
// documents are refused before they are decoded.
const MaxNesting = 32

// readRegular reads a policy file without ever blocking on it: the file is
// opened non-blocking and read only if it is a regular file (checked on the
// opened descriptor, so a file swapped for a FIFO is still refused) of at
// most MaxFileSize bytes.
func readRegular(name string) ([]byte, error) {
	data, err := regfile.Read(name, MaxFileSize)
	switch {
	case errors.Is(err, regfile.ErrNotRegular):
		return nil, fmt.Errorf("%w: policy files and drop-ins must be regular files", err)
	case err != nil:
		return nil, fmt.Errorf("reading policy: %w", err)
	}
	return data, nil
}

// Source is one policy document.
type Source struct {
	Name string
	Data []byte
}

// Default returns the embedded default policy.
func Default() *Policy {
	p, err := Parse()
	if err != nil {
		panic("embedded default policy is invalid: " + err.Error()) // a build defect, caught by tests
	}
	return p
}

// Parse applies the sources over the embedded default and validates the
// result. The first source must carry `version = 1` unless it is a drop-in
// over nothing; every source may set any subset of keys.
func Parse(srcs ...Source) (*Policy, error) {
	var p Policy
	if _, err := toml.NewDecoder(bytes.NewReader(defaultTOML)).Decode(&p); err != nil {
		return nil, fmt.Errorf("embedded default policy: %w", err)
	}
	var problems []Problem
	// where records, per key path, the position that set it last, so
	// cross-field errors point at the right file.
	where := map[string]Pos{}
	for _, s := range srcs {
		probs, locs := check(s)
		problems = append(problems, probs...)
		if len(probs) > 0 {
			continue
		}
		// Validated: decoding over the current values cannot fail now.
		// Arrays, including [[refresh.rule]], are replaced, not appended.
		var raw map[string]any
		_, _ = toml.Decode(string(s.Data), &raw)
		if rules, ok := raw["refresh"].(map[string]any); ok {
			if _, ok := rules["rule"]; ok {
				p.Refresh.Rules = nil
			}
		}
		if _, err := toml.Decode(string(s.Data), &p); err != nil {
			problems = append(problems, Problem{Pos{File: s.Name}, err.Error()})
			continue
		}
		for k, v := range locs {
			where[k] = v
		}
	}
	if len(problems) == 0 {
		problems = semantic(&p, where)
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return &p, nil
}

// check parses one source and compares it with the schema: syntax errors,
// unknown keys, wrong types and invalid values, all at once.
func check(s Source) ([]Problem, locations) {
	if len(s.Data) > MaxFileSize {
		return []Problem{{Pos{File: s.Name}, fmt.Sprintf("%d bytes is too large for a policy file (the limit is %d)", len(s.Data), MaxFileSize)}}, nil
	}
	if line, col, ok := tooDeep(s.Data, MaxNesting); ok {
		return []Problem{{Pos{s.Name, line, col}, fmt.Sprintf("keys, arrays or inline tables nested deeper than %d levels", MaxNesting)}}, nil
	}
	var raw map[string]any
	if _, err := toml.Decode(string(s.Data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := lineCol(s.Data, pe.Position.Start)
			return []Problem{{Pos{s.Name, line, col}, pe.Message}}, nil
		}
		return []Problem{{Pos{File: s.Name}, err.Error()}}, nil
	}
	locs := locate(s.Name, s.Data)
	c := &checker{file: s.Name, locs: locs}
	c.table(raw, reflect.TypeFor[Policy](), "")
	sort.SliceStable(c.problems, func(i, j int) bool {
		a, b := c.problems[i], c.problems[j]
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return c.problems, locs
}

// lineCol converts a byte offset to a 1-based line and column. The parser's
// own line count puts an error at a line's newline on the next line.
func lineCol(data []byte, off int) (int, int) {
	off = max(0, min(off, len(data)))
	nl := bytes.LastIndexByte(data[:off], '\n')
	return bytes.Count(data[:off], []byte("\n")) + 1, off - nl
}

type checker struct {
	file     string
	locs     locations
	problems []Problem
}

func (c *checker) add(key, format string, args ...any) {
	c.problems = append(c.problems, Problem{c.pos(key), fmt.Sprintf(format, args...)})
}

// pos finds a key's position, falling back to its nearest located parent.
func (c *checker) pos(key string) Pos {
	if p, ok := c.locs[key]; ok {
		return p
	}
	if k, ok := strings.CutSuffix(key, keySuffix); ok {
		// A table has no key position: [table] is written at its header.
		if p, ok := c.locs[k]; ok {
			return p
		}
	}
	for k := key; k != ""; {
		if p, ok := c.locs[k]; ok {
			return p
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return Pos{File: c.file, Line: 1, Col: 1}
}

// tooDeep scans TOML source for the first '[', '{' or key dot that opens
// nesting level max+1, outside strings and comments, and returns its 1-based
// line and column. Table headers count as one level ([[x]] as two), and each
// dot of a dotted key (a.b.c, [a.b.c]) as one more: the decoder is as
// quadratic in those. Dots are counted since the last bracket, '=', ',' or
// line end, so that a float's dot never adds up. The scan is linear and
// forgiving: the decoder reports syntax errors afterwards.
func tooDeep(data []byte, max int) (line, col int, found bool) {
	depth, dots := 0, 0
	line, lineStart := 1, 0
	for i := 0; i < len(data); i++ {
		switch ch := data[i]; ch {
		case '\n':
			line, lineStart = line+1, i+1
			dots = 0
		case '=', ',':
			dots = 0
		case '.':
			dots++
			if depth+dots > max {
				return line, i - lineStart + 1, true
			}
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			// Skip the string; multi-line strings count their lines.
			triple := i+2 < len(data) && data[i+1] == ch && data[i+2] == ch
			j := i + 1
			if triple {
				j = i + 3
			}
			for ; j < len(data); j++ {
				c := data[j]
				if c == '\\' && ch == '"' {
					j++
					if j < len(data) && data[j] == '\n' {
						line, lineStart = line+1, j+1
					}
					continue
				}
				if c == '\n' {
					if !triple {
						break // unterminated: the decoder reports it
					}
					line, lineStart = line+1, j+1
					continue
				}
				if c == ch && (!triple || j+2 < len(data) && data[j+1] == ch && data[j+2] == ch) {
					if triple {
						j += 2
					}
					break
				}
			}
			if j < len(data) && data[j] == '\n' {
				j-- // let the loop count the line
			}
			i = j
		case '[', '{':
			depth++
			dots = 0
			if depth > max {
				return line, i - lineStart + 1, true
			}
		case ']', '}':
			dots = 0
			if depth > 0 {
				depth--
			}
		}
	}
	return 0, 0, false
}

var unmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

// table checks a TOML table against a struct type.
func (c *checker) table(m map[string]any, t reflect.Type, prefix string) {
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("toml"); tag != "" && tag != "-" {
			fields[tag] = f
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := join(prefix, k)
		f, ok := fields[k]
		if !ok {
			c.add(key+keySuffix, "unknown key %q%s", key, suggest(k, fields))
			continue
		}
		c.value(m[k], f.Type, key)
	}
}

// value checks one value against a Go type.
func (c *checker) value(v any, t reflect.Type, key string) {
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		s, ok := v.(string)
		if !ok {
			c.add(key, "%s: expected a string, got %s", key, tomlType(v))
			return
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			c.add(key, "%s: %v", key, err)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			c.add(key, "%s: expected a table, got %s", key, tomlType(v))
			return
		}
		c.table(m, t, key)
	case reflect.Slice:
		items, ok := v.([]map[string]any)
		if ok && t.Elem().Kind() == reflect.Struct {
			for i, it := range items {
				c.table(it, t.Elem(), join(key, itoa(i)))
			}
			return
		}
		arr, ok := v.([]any)
		if !ok {
			want := "an array"
			if t.Elem().Kind() == reflect.Struct {
				want = "an array of tables ([[" + key + "]])"
			}
			c.add(key, "%s: expected %s, got %s", key, want, tomlType(v))
			return
		}
		for i, it := range arr {
			c.value(it, t.Elem(), join(key, itoa(i)))
		}
	case reflect.String:
		str, ok := v.(string)
		if !ok {
			c.add(key, "%s: expected a string, got %s", key, tomlType(v))
			return
		}
		if globKeys[pattern(key)] {
			if _, err := path.Match(str, ""); err != nil || str == "" {
				c.add(key, "%s: invalid glob %q", key, str)
			}
		}
	case reflect.Int:
		n, ok := v.(int64)
		if !ok {
			c.add(key, "%s: expected an integer, got %s", key, tomlType(v))
			return
		}
		if key == "version" && n != Version {
			c.add(key, "version: unsupported policy version %d (this stowage understands version = %d)", n, Version)
			return
		}
		if r, ok := intRanges[key]; ok && (n < r[0] || n > r[1]) {
			c.add(key, "%s: must be between %d and %d, got %d", key, r[0], r[1], n)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.add(key, "%s: expected true or false, got %s", key, tomlType(v))
		}
	default:
		c.add(key, "%s: unsupported type %s (a stowage bug)", key, t)
	}
}

// globKeys are string values that must be valid path.Match globs
// (array elements and [[refresh.rule]] indices written as *).
var globKeys = map[string]bool{
	"prune.keep.*":            true,
	"volumes.keep.*":          true,
	"volumes.include.*":       true,
	"refresh.rule.*.match":    true,
	"refresh.newer_tags.*":    true,
	"refresh.newer_exclude.*": true,
	"notify.topics.*":         true,
}

// intRanges bound integer values.
var intRanges = map[string][2]int64{
	"refresh.concurrency":  {1, 256},
	"refresh.per_registry": {1, 256},
	"refresh.rate":         {0, 10000},
	"refresh.budget":       {0, 1 << 31},
	"prune.keep_last":      {0, 1 << 31},
}

// pattern replaces numeric path components with *.
func pattern(key string) string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, ".")
}

func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// suggest names the closest known key for a likely typo.
func suggest(k string, fields map[string]reflect.StructField) string {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(k, name); d < bestD || d == bestD && name < best {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// later reports whether a was written after b: in a later file (drop-ins
// apply in order, so a later name sorts after), or further down one file.
func later(a, b Pos) bool {
	if a.File != b.File {
		return a.File > b.File
	}
	return a.Line > b.Line || a.Line == b.Line && a.Col > b.Col
}

// semantic checks constraints between values of the merged policy.
func semantic(p *Policy, where map[string]Pos) []Problem {
	var probs []Problem
	add := func(key, format string, args ...any) {
		pos, ok := where[key]
		if !ok {
			pos = Pos{File: EmbeddedSource}
		}
		probs = append(probs, Problem{pos, fmt.Sprintf(format, args...)})
	}
	if p.Prune.LowWatermark >= p.Prune.HighWatermark {
		// Point at whichever of the two was written last.
		key := "prune.low_watermark"
		hi, hiOK := where["prune.high_watermark"]
		lo, loOK := where[key]
		if hiOK && (!loOK || later(hi, lo)) {
			key = "prune.high_watermark"
		}
		add(key, "prune.low_watermark (%v%%) must be below prune.high_watermark (%v%%)", float64(p.Prune.LowWatermark), float64(p.Prune.HighWatermark))
	}
	if p.Refresh.Timeout.Duration <= 0 {
		add("refresh.timeout", "refresh.timeout: must be greater than 0")
	}
	if p.Schedule.RunTimeout.Duration <= 0 {
		add("schedule.run_timeout", "schedule.run_timeout: must be greater than 0")
	}
	for _, key := range []string{"schedule.defer_on_metered", "schedule.defer_on_battery"} {
		list := p.Schedule.DeferOnMetered
		if key == "schedule.defer_on_battery" {
			list = p.Schedule.DeferOnBattery
		}
		for i, w := range list {
			if slices.Index(list, w) < i {
				add(key, "%s: %q is listed twice", key, string(w))
			}
		}
	}
	if p.Verify.IntegrityRate.IsPercent {
		add("verify.integrity_rate", "verify.integrity_rate: must be a rate in bytes per second, not a percentage")
	}
	for i, r := range p.Refresh.Rules {
		key := join("refresh.rule", itoa(i))
		if r.Match == "" {
			add(key, "refresh.rule[%d]: match is required", i)
		}
		if r.Mode == "" {
			add(key, "refresh.rule[%d]: mode is required", i)
		}
		if r.PullNewer && r.Mode != RefreshPull {
			add(key, "refresh.rule[%d]: pull_newer needs mode = \"pull\"", i)
		}
	}
	sort.SliceStable(probs, func(i, j int) bool {
		a, b := probs[i], probs[j]
		return a.File < b.File || a.File == b.File && (a.Line < b.Line || a.Line == b.Line && a.Col < b.Col)
	})
	return probs
}
