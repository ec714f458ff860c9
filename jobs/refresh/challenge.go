package refresh

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadChallenge is a WWW-Authenticate header that is not a list of
// RFC 7235 challenges.
var ErrBadChallenge = errors.New("malformed WWW-Authenticate header")

// maxChallengeQuote bounds how much of a bad header an error quotes.
const maxChallengeQuote = 120

// challenge is one RFC 7235 authentication challenge.
type challenge struct {
	scheme  string            // lower case: "basic", "bearer", ...
	params  map[string]string // parameter names in lower case
	token68 string            // the token68 form (`Negotiate abc==`), if used
}

// parseChallenges parses the values of every WWW-Authenticate header of an
// answer (RFC 7235 section 4.1): each holds one or more challenges,
// separated by commas like their parameters; schemes and parameter names
// are case-insensitive; values are tokens or quoted strings with
// backslash escapes; a challenge may carry a token68 instead of
// parameters. It is lenient in one way registries need: an unquoted value
// may hold characters a token may not (`realm=https://auth.example/token`).
// A header that cannot be split into challenges is an error wrapping
// ErrBadChallenge that quotes (the start of) the header.
func parseChallenges(values []string) ([]challenge, error) {
	var out []challenge
	for _, v := range values {
		p := challengeParser{s: v}
		chs, err := p.parse()
		if err != nil {
			q := v
			if len(q) > maxChallengeQuote {
				q = q[:maxChallengeQuote] + "..."
			}
			return nil, fmt.Errorf("%w %q: at byte %d: %s", ErrBadChallenge, q, p.i, err)
		}
		out = append(out, chs...)
	}
	return out, nil
}

// pickChallenge returns the first challenge whose scheme we can answer
// (basic or bearer), in the order the registry sent them, as
// containers/image does; ok is false when there is none.
func pickChallenge(chs []challenge) (challenge, bool) {
	for _, ch := range chs {
		if ch.scheme == "basic" || ch.scheme == "bearer" {
			return ch, true
		}
	}
	return challenge{}, false
}

type challengeParser struct {
	s string
	i int
}

func (p *challengeParser) parse() ([]challenge, error) {
	var out []challenge
	for {
		p.skipListSeparators()
		if p.end() {
			return out, nil
		}
		ch, err := p.challenge()
		if err != nil {
			return nil, err
		}
		out = append(out, ch)
	}
}

// challenge parses `scheme [ 1*SP ( token68 / #auth-param ) ]` and the
// comma that ends it, if any.
func (p *challengeParser) challenge() (challenge, error) {
	scheme := p.token()
	if scheme == "" {
		return challenge{}, fmt.Errorf("expected an auth scheme, found %q", p.rest())
	}
	ch := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	spaces := p.skipSpaces()
	if p.end() || p.peek() == ',' {
		return ch, nil
	}
	if spaces == 0 {
		return challenge{}, fmt.Errorf("expected a space after the scheme %q", scheme)
	}
	if t, ok := p.tryToken68(); ok {
		ch.token68 = t
		return ch, p.endOfItem()
	}
	for {
		name, value, err := p.param()
		if err != nil {
			return challenge{}, err
		}
		name = strings.ToLower(name)
		// A name must occur once (RFC 7235 2.1); the first one counts.
		if _, dup := ch.params[name]; !dup {
			ch.params[name] = value
		}
		p.skipSpaces()
		if p.end() {
			return ch, nil
		}
		if p.peek() != ',' {
			return challenge{}, fmt.Errorf("expected ',' after the value of %q, found %q", name, p.rest())
		}
		p.skipListSeparators()
		if p.end() || !p.paramAhead() {
			return ch, nil // the next challenge, or nothing
		}
	}
}

// param parses `token BWS "=" BWS ( token / quoted-string )`.
func (p *challengeParser) param() (string, string, error) {
	name := p.token()
	if name == "" {
		return "", "", fmt.Errorf("expected a parameter name, found %q", p.rest())
	}
	p.skipSpaces()
	if p.end() || p.peek() != '=' {
		return "", "", fmt.Errorf("expected '=' after the parameter %q", name)
	}
	p.i++
	p.skipSpaces()
	if !p.end() && p.peek() == '"' {
		v, err := p.quoted()
		return name, v, err
	}
	start := p.i
	for !p.end() {
		c := p.peek()
		if c == ',' || c == ' ' || c == '\t' || c == '"' {
			break
		}
		if c < 0x21 || c == 0x7f {
			return "", "", fmt.Errorf("control character %#x in the value of %q", c, name)
		}
		p.i++
	}
	if p.i == start {
		return "", "", fmt.Errorf("empty value for the parameter %q", name)
	}
	return name, p.s[start:p.i], nil
}

// quoted parses a quoted-string, undoing backslash escapes.
func (p *challengeParser) quoted() (string, error) {
	p.i++ // the opening quote
	var b strings.Builder
	for !p.end() {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", errors.New("backslash at the end of a quoted string")
			}
			e := p.s[p.i+1]
			if !quotedPairChar(e) {
				return "", fmt.Errorf("control character %#x escaped in a quoted string", e)
			}
			b.WriteByte(e)
			p.i += 2
		case c == '\t' || (c >= 0x20 && c != 0x7f):
			b.WriteByte(c)
			p.i++
		default:
			return "", fmt.Errorf("control character %#x in a quoted string", c)
		}
	}
	return "", errors.New("unterminated quoted string")
}

// tryToken68 reads `token68 *SP` when it is followed by the end of the
// item (end or ','); otherwise it consumes nothing.
func (p *challengeParser) tryToken68() (string, bool) {
	start := p.i
	j := p.i
	for j < len(p.s) && token68Char(p.s[j]) {
		j++
	}
	if j == start {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	k := j
	for k < len(p.s) && (p.s[k] == ' ' || p.s[k] == '\t') {
		k++
	}
	if k < len(p.s) && p.s[k] != ',' {
		return "", false
	}
	p.i = j
	return p.s[start:j], true
}

// endOfItem accepts optional spaces, then the end or a comma.
func (p *challengeParser) endOfItem() error {
	p.skipSpaces()
	if !p.end() && p.peek() != ',' {
		return fmt.Errorf("expected ',' or the end, found %q", p.rest())
	}
	return nil
}

// paramAhead reports whether the input continues with `token BWS "="`
// (another parameter) rather than a new challenge's scheme.
func (p *challengeParser) paramAhead() bool {
	j := p.i
	for j < len(p.s) && tokenChar(p.s[j]) {
		j++
	}
	if j == p.i {
		return false
	}
	for j < len(p.s) && (p.s[j] == ' ' || p.s[j] == '\t') {
		j++
	}
	return j < len(p.s) && p.s[j] == '='
}

func (p *challengeParser) token() string {
	start := p.i
	for !p.end() && tokenChar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *challengeParser) skipSpaces() int {
	n := 0
	for !p.end() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
		n++
	}
	return n
}

// skipListSeparators skips `*( OWS "," ) OWS`: RFC 7230's list syntax
// allows empty elements.
func (p *challengeParser) skipListSeparators() {
	for !p.end() {
		if c := p.peek(); c != ' ' && c != '\t' && c != ',' {
			return
		}
		p.i++
	}
}

func (p *challengeParser) end() bool  { return p.i >= len(p.s) }
func (p *challengeParser) peek() byte { return p.s[p.i] }

func (p *challengeParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "..."
	}
	return r
}

// tokenChar is RFC 7230's tchar.
func tokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// token68Char is RFC 7235's token68 alphabet, without the '=' padding.
func token68Char(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

// quotedPairChar is what may follow a backslash: HTAB, SP, VCHAR, obs-text.
func quotedPairChar(c byte) bool {
	return c == '\t' || (c >= 0x20 && c != 0x7f)
}
