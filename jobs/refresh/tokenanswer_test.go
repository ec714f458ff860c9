package refresh

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestTokenAnswer(t *testing.T) {
	start := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	ok := func(body string) *response { return &response{status: http.StatusOK, body: []byte(body)} }
	for _, tc := range []struct {
		name    string
		resp    *response
		token   string
		renewIn time.Duration
		err     string
	}{
		{"token and expires_in", ok(`{"token":"a","expires_in":300}`), "a", 290 * time.Second, ""},
		{"access_token only (OAuth2)", ok(`{"access_token":"b","expires_in":20}`), "b", 18 * time.Second, ""},
		{"token wins over access_token", ok(`{"token":"a","access_token":"b"}`), "a", 54 * time.Second, ""},
		{"no expires_in: 60 s", ok(`{"token":"a"}`), "a", 54 * time.Second, ""},
		{"zero or negative expires_in: 60 s", ok(`{"token":"a","expires_in":-5}`), "a", 54 * time.Second, ""},
		{"short lifetime honoured", ok(`{"token":"a","expires_in":2}`), "a", 1800 * time.Millisecond, ""},
		{"huge lifetime capped at a day", ok(`{"token":"a","expires_in":9223372036854775807}`), "a", 24*time.Hour - 10*time.Second, ""},
		{"issued_at in the future is ignored", ok(`{"token":"a","expires_in":60,"issued_at":"2030-01-01T00:00:00Z"}`), "a", 54 * time.Second, ""},
		{"no token", ok(`{"expires_in":60}`), "", 0, "holds no token"},
		{"not JSON", ok(`<html>`), "", 0, "decoding the token server's answer"},
		{"401", &response{status: http.StatusUnauthorized}, "", 0, "not authorized"},
		{"500", &response{status: http.StatusInternalServerError}, "", 0, "HTTP 500"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := parseTokenAnswer(tc.resp, "repository:a:pull", start)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.value != tc.token || tok.renewAt.Sub(start) != tc.renewIn {
				t.Errorf("got %q renewed after %s, want %q after %s", tok.value, tok.renewAt.Sub(start), tc.token, tc.renewIn)
			}
		})
	}
	if _, err := parseTokenAnswer(&response{status: http.StatusForbidden}, "s", start); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("403: %v, want ErrUnauthorized", err)
	}
}

func TestDigestFromBody(t *testing.T) {
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[]}`)
	d := digest.FromBytes(m).String()
	sha512 := digest.SHA512.FromBytes(m).String()
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	n := strconv.Itoa(len(m))
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		want   string // digest, or the error's text after "!"
		media  string
	}{
		{"plain", hdr("Content-Type", imgspecv1.MediaTypeImageManifest, "Content-Length", n), m, d, imgspecv1.MediaTypeImageManifest},
		{"octet-stream: type from the body", hdr("Content-Type", "application/octet-stream"), m, d, imgspecv1.MediaTypeImageManifest},
		{"matching digest header", hdr("Docker-Content-Digest", d), m, d, imgspecv1.MediaTypeImageManifest},
		{"sha512 digest header", hdr("Docker-Content-Digest", sha512), m, sha512, imgspecv1.MediaTypeImageManifest},
		{"digest header of other content", hdr("Docker-Content-Digest", digest.FromString("x").String()), m, "!does not hash to", ""},
		{"invalid digest header", hdr("Docker-Content-Digest", "sha256:nope"), m, "!invalid digest", ""},
		{"Content-Type lies", hdr("Content-Type", imgspecv1.MediaTypeImageIndex), m, "!Content-Type is " + imgspecv1.MediaTypeImageIndex, ""},
		{"Content-Length disagrees", hdr("Content-Length", "7"), m, "!Content-Length", ""},
		{"not a manifest", hdr(), []byte("<html>hi</html>"), "!not a manifest", ""},
		{"empty body", hdr(), nil, "!not a manifest", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mi, err := manifestFromBody(&response{status: http.StatusOK, header: tc.header, body: tc.body})
			if strings.HasPrefix(tc.want, "!") {
				if err == nil || !strings.Contains(err.Error(), tc.want[1:]) {
					t.Fatalf("error %v, want %q", err, tc.want[1:])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if mi.digest != tc.want || mi.mediaType != tc.media || len(mi.body) != len(tc.body) {
				t.Errorf("got %s %s, want %s %s", mi.digest, mi.mediaType, tc.want, tc.media)
			}
		})
	}
}
