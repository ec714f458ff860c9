package refresh

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestChallengeParse(t *testing.T) {
	p := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		headers []string
		want    []challenge
	}{
		{"docker hub", []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`},
			[]challenge{{scheme: "bearer", params: p("realm", "https://auth.docker.io/token", "service", "registry.docker.io")}}},
		{"basic", []string{`Basic realm="Registry Realm"`},
			[]challenge{{scheme: "basic", params: p("realm", "Registry Realm")}}},
		{"case-insensitive scheme and names", []string{`BEARER Realm="r", SERVICE="s", Scope="repository:a/b:pull"`},
			[]challenge{{scheme: "bearer", params: p("realm", "r", "service", "s", "scope", "repository:a/b:pull")}}},
		{"escaped quotes and backslashes", []string{`Bearer realm="https://a/t",error="say \"hi\" \\ bye"`},
			[]challenge{{scheme: "bearer", params: p("realm", "https://a/t", "error", `say "hi" \ bye`)}}},
		{"comma inside a quoted string", []string{`Bearer scope="repository:a:pull,push",realm="r"`},
			[]challenge{{scheme: "bearer", params: p("scope", "repository:a:pull,push", "realm", "r")}}},
		{"two challenges in one header", []string{`Basic realm="b", Bearer realm="r",service="s"`},
			[]challenge{{scheme: "basic", params: p("realm", "b")}, {scheme: "bearer", params: p("realm", "r", "service", "s")}}},
		{"two headers", []string{`Negotiate`, `Bearer realm="r"`},
			[]challenge{{scheme: "negotiate", params: p()}, {scheme: "bearer", params: p("realm", "r")}}},
		{"token68 then a challenge", []string{`Negotiate YIIB+w==, Basic realm="x"`},
			[]challenge{{scheme: "negotiate", params: p(), token68: "YIIB+w=="}, {scheme: "basic", params: p("realm", "x")}}},
		{"token68 alone", []string{`NewAuth abc.def~/+`},
			[]challenge{{scheme: "newauth", params: p(), token68: "abc.def~/+"}}},
		{"unquoted token and URL values, spaces around =", []string{`Bearer realm = https://a.example:5000/token , service=reg.example`},
			[]challenge{{scheme: "bearer", params: p("realm", "https://a.example:5000/token", "service", "reg.example")}}},
		{"empty list elements", []string{`, Basic realm="a" ,, , Bearer realm="b",`},
			[]challenge{{scheme: "basic", params: p("realm", "a")}, {scheme: "bearer", params: p("realm", "b")}}},
		{"duplicate parameter: the first counts", []string{`Bearer realm="a",realm="b"`},
			[]challenge{{scheme: "bearer", params: p("realm", "a")}}},
		{"empty quoted value", []string{`Bearer realm="",service="s"`},
			[]challenge{{scheme: "bearer", params: p("realm", "", "service", "s")}}},
		{"scheme without parameters then another", []string{`Basic, Bearer realm="r"`},
			[]challenge{{scheme: "basic", params: p()}, {scheme: "bearer", params: p("realm", "r")}}},
		{"no header", nil, nil},
		{"empty header", []string{""}, nil},
		{"tabs as whitespace", []string{"Bearer\trealm=\"r\",\tservice=\"s\""},
			[]challenge{{scheme: "bearer", params: p("realm", "r", "service", "s")}}},
		{"obs-text in a quoted string", []string{"Basic realm=\"caf\xc3\xa9\""},
			[]challenge{{scheme: "basic", params: p("realm", "caf\xc3\xa9")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChallenges(tt.headers)
			if err != nil {
				t.Fatalf("parseChallenges(%q): %v", tt.headers, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseChallenges(%q)\n got %+v\nwant %+v", tt.headers, got, tt.want)
			}
		})
	}
}

func TestChallengeParseErrors(t *testing.T) {
	tests := []struct{ header, want string }{
		{`Bearer realm="https://a/t`, "unterminated quoted string"},
		{`Bearer realm="a\`, "backslash at the end"},
		{`Bearer realm="a` + "\x00" + `"`, "control character 0x0"},
		{`Bearer realm="a\` + "\n" + `"`, "control character 0xa escaped"},
		{`Bearer realm=abc def`, "expected ','"},
		{`Bearer realm="a" service="b"`, "expected ','"},
		{`Bearer realm="a",=b`, "expected an auth scheme"},
		{`"Bearer" realm="a"`, "expected an auth scheme"},
		{`Bearer realm="a", service=`, "empty value"},
		{`Bearer realm="a", service=x` + "\x01", "control character 0x1"},
		{`Bearer=realm`, "expected a space after the scheme"},
		{`Bearer @realm="a"`, "expected a parameter name"},
		{`Bearer realm "a"`, "expected '='"},
		{`Negotiate abc== def`, "expected ','"},
		{strings.Repeat("x", 500) + ` realm="`, "unterminated"},
	}
	for _, tt := range tests {
		got, err := parseChallenges([]string{`Basic realm="fine"`, tt.header})
		if err == nil {
			t.Errorf("%q: no error, got %+v", tt.header, got)
			continue
		}
		if !errors.Is(err, ErrBadChallenge) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %q, want ErrBadChallenge mentioning %q", tt.header, err, tt.want)
		}
		if len(err.Error()) > 400 {
			t.Errorf("%q: error message is %d bytes long", tt.header[:20], len(err.Error()))
		}
	}
}

func TestChallengePick(t *testing.T) {
	chs, err := parseChallenges([]string{`Negotiate abc`, `Basic realm="b", Bearer realm="r"`})
	if err != nil {
		t.Fatal(err)
	}
	if ch, ok := pickChallenge(chs); !ok || ch.scheme != "basic" {
		t.Errorf("pick: %+v %t, want the first supported (basic)", ch, ok)
	}
	if _, ok := pickChallenge(chs[:1]); ok {
		t.Error("picked an unsupported scheme")
	}
}

// FuzzChallengeParse: any header either parses into challenges with
// lower-case schemes and parameter names, or fails with ErrBadChallenge;
// it never panics or loops.
func FuzzChallengeParse(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`,
		`Basic realm="a\"b", Bearer realm=x,scope="a,b"`,
		`Negotiate YIIB+w==, Basic`,
		`,,, Basic realm="`, `Bearer realm="\`, "Bearer realm=\"\x00\"", `x y=z,,w`,
		`Bearer realm="unterminated`, `Bearer ,,=,"`, "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		chs, err := parseChallenges([]string{h})
		if err != nil {
			if !errors.Is(err, ErrBadChallenge) {
				t.Fatalf("%q: error %v is not ErrBadChallenge", h, err)
			}
			return
		}
		for _, ch := range chs {
			if ch.scheme == "" || ch.scheme != strings.ToLower(ch.scheme) {
				t.Fatalf("%q: scheme %q", h, ch.scheme)
			}
			for k := range ch.params {
				if k == "" || k != strings.ToLower(k) {
					t.Fatalf("%q: parameter name %q", h, k)
				}
			}
		}
	})
}
