package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TagPager is a reverse proxy on 127.0.0.1 in front of a docker-registry
// that paginates GET /v2/<name>/tags/list the way the distribution spec
// describes (n, last, a Link: <...>; rel="next" header): docker-registry
// 2.8, the one Debian ships, ignores n and last and always sends every
// tag, so pagination cannot be exercised against it alone. The tags come
// from the real registry on every page; everything else is proxied as is.
type TagPager struct {
	Addr string // host:port to use in image names
	// MaxN caps the page size whatever n the client asks (as Docker Hub
	// does); 0 = no cap.
	MaxN int
	// NoLink omits the Link header, so a client must fall back to last=.
	NoLink bool

	mu    sync.Mutex
	pages []url.URL
	links int
}

// StartTagPager proxies to the plain-HTTP registry at target (host:port).
func StartTagPager(t testing.TB, target string, maxN int, noLink bool) *TagPager {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &TagPager{Addr: l.Addr().String(), MaxN: maxN, NoLink: noLink}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/") && strings.HasSuffix(r.URL.Path, "/tags/list") {
			p.serveTags(w, r, target)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *TagPager) serveTags(w http.ResponseWriter, r *http.Request, target string) {
	p.mu.Lock()
	p.pages = append(p.pages, *r.URL)
	p.mu.Unlock()
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+target+r.URL.Path, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(body)
		return
	}
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	sort.Strings(list.Tags) // the spec's lexical order
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(list.Tags, last)
		for i < len(list.Tags) && list.Tags[i] <= last {
			i++
		}
		list.Tags = list.Tags[i:]
	}
	n := len(list.Tags)
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		n = min(n, v)
	}
	if p.MaxN > 0 {
		n = min(n, p.MaxN)
	}
	more := n < len(list.Tags)
	list.Tags = list.Tags[:n]
	if more && !p.NoLink && n > 0 {
		w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, r.URL.Path, n, url.QueryEscape(list.Tags[n-1])))
		p.mu.Lock()
		p.links++
		p.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// Pages returns the tag-list requests served so far (path and query).
func (p *TagPager) Pages() []url.URL {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.URL(nil), p.pages...)
}

// Links returns how many pages carried a Link header.
func (p *TagPager) Links() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.links
}

// Reset forgets the recorded pages.
func (p *TagPager) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pages, p.links = nil, 0
}
