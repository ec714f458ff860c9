package policy

import "strings"

// Pos is a position in a policy file (1-based line and column).
type Pos struct {
	File string
	Line int
	Col  int
}

// locations maps dotted key paths to where they are written in one file:
// "prune.quota" is the key, "prune.keep.2" the third array element, and
// "refresh.rule.0.match" a key of the first [[refresh.rule]] table. Values
// are positions of the value (for keys) or of the element.
type locations map[string]Pos

// keySuffix marks the position of a key itself rather than its value.
const keySuffix = "#key"

// locate scans TOML source for key and element positions. BurntSushi/toml
// keeps positions private and stops at the first error, so stowage finds
// them itself to report every problem at once. The file has already parsed,
// so the scanner can be forgiving: an unlocatable key falls back to its table.
func locate(file string, src []byte) locations {
	locs := locations{}
	arrayCount := map[string]int{}
	var table string
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trim := strings.TrimLeft(line, " \t")
		col := len(line) - len(trim) + 1
		switch {
		case trim == "" || trim[0] == '#':
			continue
		case strings.HasPrefix(trim, "[["):
			name := keyPath(strings.TrimSpace(strings.SplitN(trim[2:], "]]", 2)[0]))
			n := arrayCount[name]
			arrayCount[name] = n + 1
			table = name + "." + itoa(n)
			locs[table] = Pos{file, i + 1, col}
			locateParents(locs, name+".", Pos{file, i + 1, col})
			if _, ok := locs[name]; !ok {
				locs[name] = Pos{file, i + 1, col}
			}
			continue
		case trim[0] == '[':
			table = keyPath(strings.TrimSpace(strings.SplitN(trim[1:], "]", 2)[0]))
			locs[table] = Pos{file, i + 1, col}
			locateParents(locs, table+".", Pos{file, i + 1, col})
			continue
		}
		eq := indexOutsideQuotes(trim, '=')
		if eq < 0 {
			continue
		}
		key := keyPath(strings.TrimSpace(trim[:eq]))
		if table != "" {
			key = table + "." + key
		}
		rest := trim[eq+1:]
		vcol := col + eq + 1 + (len(rest) - len(strings.TrimLeft(rest, " \t")))
		locs[key] = Pos{file, i + 1, vcol}
		locs[key+keySuffix] = Pos{file, i + 1, col}
		locateParents(locs, key, Pos{file, i + 1, col})
		// Walk the value (possibly over several lines) to place array elements.
		i = scanValue(file, lines, i, vcol-1, key, locs)
	}
	return locs
}

// locateParents places the tables a dotted path implies ("a" and "a.b"
// of a.b.c = 1; with a trailing dot, as for the header [a.b.c], also
// "a.b.c" itself) where they are first written, unless they have a
// position already, so that an unknown implied table is reported there.
func locateParents(locs locations, path string, p Pos) {
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		if _, ok := locs[path[:i]]; !ok {
			locs[path[:i]] = p
		}
		if _, ok := locs[path[:i]+keySuffix]; !ok {
			locs[path[:i]+keySuffix] = p
		}
	}
}

// scanValue walks a value starting at lines[li][start:], records the
// positions of top-level array elements, and returns the last line index the
// value occupies.
func scanValue(file string, lines []string, li, start int, key string, locs locations) int {
	depth, elem := 0, 0
	expectElem := false
	for ; li < len(lines); li++ {
		s := lines[li]
		for c := start; c < len(s); c++ {
			ch := s[c]
			switch {
			case ch == '#':
				c = len(s)
				continue
			case ch == ' ' || ch == '\t' || ch == '\r':
				continue
			}
			if depth == 1 && expectElem && ch != ']' && ch != ',' {
				locs[key+"."+itoa(elem)] = Pos{file, li + 1, c + 1}
				elem++
				expectElem = false
			}
			switch ch {
			case '[', '{':
				depth++
				if depth == 1 && ch == '[' {
					expectElem = true
				}
			case ']', '}':
				depth--
			case ',':
				if depth == 1 {
					expectElem = true
				}
			case '"', '\'':
				var nl int
				c, nl = skipString(lines, li, c)
				if nl > li {
					li = nl
					s = lines[li]
				}
			}
			if depth == 0 && (ch == ']' || ch == '}' || ch == '"' || ch == '\'') {
				return li
			}
		}
		if depth == 0 {
			return li
		}
		start = 0
	}
	return len(lines) - 1
}

// skipString returns the index of the closing quote of the string opening
// at lines[li][c], and the line it is on (multi-line strings span lines).
func skipString(lines []string, li, c int) (int, int) {
	s := lines[li]
	q := s[c]
	triple := strings.HasPrefix(s[c:], strings.Repeat(string(q), 3))
	if triple {
		end := string([]byte{q, q, q})
		if j := strings.Index(s[c+3:], end); j >= 0 {
			return c + 3 + j + 2, li
		}
		for l := li + 1; l < len(lines); l++ {
			if j := strings.Index(lines[l], end); j >= 0 {
				return j + 2, l
			}
		}
		return len(lines[len(lines)-1]), len(lines) - 1
	}
	for j := c + 1; j < len(s); j++ {
		if q == '"' && s[j] == '\\' {
			j++
			continue
		}
		if s[j] == q {
			return j, li
		}
	}
	return len(s), li
}

// keyPath normalises a (possibly dotted, possibly quoted) TOML key.
func keyPath(k string) string {
	var parts []string
	for _, p := range splitOutsideQuotes(k, '.') {
		p = strings.TrimSpace(p)
		p = strings.Trim(p, `"'`)
		parts = append(parts, p)
	}
	return strings.Join(parts, ".")
}

func indexOutsideQuotes(s string, sep byte) int {
	var q byte
	for i := 0; i < len(s); i++ {
		switch {
		case q != 0 && s[i] == q:
			q = 0
		case q == 0 && (s[i] == '"' || s[i] == '\''):
			q = s[i]
		case q == 0 && s[i] == sep:
			return i
		}
	}
	return -1
}

func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	for {
		i := indexOutsideQuotes(s, sep)
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i+1:]
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
