package testenv

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault is what a FaultProxy does to requests whose path contains Match.
// It injects what a real registry cannot be made to do on demand.
type Fault struct {
	Match string
	// Status, when non-zero, answers with this status instead of proxying
	// (e.g. 429, 500); Times limits it to the first N matching requests
	// (0 = every request).
	Status     int
	RetryAfter string // Retry-After header sent with Status
	Times      int
	// Delay holds the answer back (the client should time out first).
	Delay time.Duration
	// StripDigest removes Docker-Content-Digest from the registry's answer.
	StripDigest bool
	// Digest, when set, replaces the registry's Docker-Content-Digest with
	// this value (e.g. a malformed one no real registry sends).
	Digest string
	// Header replaces these headers of the registry's answer (e.g. an
	// unparsable WWW-Authenticate, or a Content-Type that lies).
	Header map[string]string
}

// ProxyRequest is one request the proxy saw.
type ProxyRequest struct {
	Method, Path string
	Arrived      time.Time // when the proxy got it (before any Delay)
	At           time.Time // when the proxy answered
	Status       int
}

// FaultProxy is an HTTP reverse proxy on 127.0.0.1 in front of a registry.
type FaultProxy struct {
	Addr string // host:port to use in image names

	mu       sync.Mutex
	faults   []Fault
	hits     map[int]int
	requests []ProxyRequest
	inFlight int
	maxIn    int
}

// MaxInFlight is the largest number of requests the proxy was serving at
// once since the last Reset.
func (p *FaultProxy) MaxInFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxIn
}

func (p *FaultProxy) enter() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight++
	if p.inFlight > p.maxIn {
		p.maxIn = p.inFlight
	}
}

func (p *FaultProxy) leave() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
}

// StartFaultProxy proxies to the plain-HTTP registry at target (host:port).
func StartFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &FaultProxy{Addr: l.Addr().String(), hits: map[int]int{}}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
	rp.ModifyResponse = func(res *http.Response) error {
		if f, _, ok := p.match(res.Request.URL.Path, false); ok {
			if f.StripDigest {
				res.Header.Del("Docker-Content-Digest")
			}
			if f.Digest != "" {
				res.Header.Set("Docker-Content-Digest", f.Digest)
			}
			for k, v := range f.Header {
				res.Header.Set(k, v)
			}
		}
		return nil
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		p.enter()
		defer p.leave()
		f, i, ok := p.match(r.URL.Path, true)
		status := 0
		defer func() { p.record(r, arrived, status) }()
		if ok && f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if ok && f.Status != 0 && (f.Times == 0 || p.hitCount(i) <= f.Times) {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			status = f.Status
			http.Error(w, http.StatusText(f.Status), f.Status)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: 200}
		rp.ServeHTTP(sw, r)
		status = sw.status
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

// SetFaults replaces the fault rules (first match wins) and resets their
// hit counters.
func (p *FaultProxy) SetFaults(f ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
	p.hits = map[int]int{}
}

// Requests returns the requests seen so far whose path contains sub.
func (p *FaultProxy) Requests(sub string) []ProxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ProxyRequest
	for _, r := range p.requests {
		if strings.Contains(r.Path, sub) {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets the recorded requests.
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = nil
	p.maxIn = p.inFlight
}

func (p *FaultProxy) match(path string, count bool) (Fault, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, f := range p.faults {
		if strings.Contains(path, f.Match) {
			if count {
				p.hits[i]++
			}
			return f, i, true
		}
	}
	return Fault{}, 0, false
}

func (p *FaultProxy) hitCount(i int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[i]
}

func (p *FaultProxy) record(r *http.Request, arrived time.Time, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, ProxyRequest{Method: r.Method, Path: r.URL.Path, Arrived: arrived, At: time.Now(), Status: status})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// String formats a request for test failure messages.
func (r ProxyRequest) String() string {
	return r.Method + " " + r.Path + " " + strconv.Itoa(r.Status) + " @" + r.At.Format("15:04:05.000")
}
