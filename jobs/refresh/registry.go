package refresh

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
)

// Errors a registry check can end with; results carry their text.
var (
	ErrBudget       = errors.New("request budget for this registry exhausted")
	ErrTimeout      = errors.New("registry did not answer in time")
	ErrRateLimited  = errors.New("rate limited by the registry")
	ErrNotFound     = errors.New("tag or repository not found")
	ErrUnauthorized = errors.New("not authorized")
	ErrBlocked      = errors.New("registry blocked in registries.conf")
	// ErrInvalidDigest is a registry answer naming a digest that is not one
	// (go-digest's Validate fails): an error for that reference, never drift.
	ErrInvalidDigest = errors.New("registry sent an invalid digest")
)

const (
	maxManifestBytes = 4 << 20
	max429Retries    = 3
	maxRetryAfter    = time.Minute
	defaultBackoff   = time.Second
	dockerHubDomain  = "docker.io"
	dockerHubHost    = "registry-1.docker.io"
)

// Counters are the requests sent to one registry host in one run.
type Counters struct {
	Head  int `json:"head_requests"`
	Get   int `json:"get_requests"`
	Ping  int `json:"ping_requests"`
	Token int `json:"token_requests"`
	// Tags counts tag-list pages (newer-version check).
	Tags int `json:"tags_requests"`
	// RateLimited counts 429 answers.
	RateLimited int `json:"rate_limited"`
}

func (c Counters) total() int { return c.Head + c.Get + c.Ping + c.Token + c.Tags }

type reqKind int

const (
	kindHead reqKind = iota
	kindGet
	kindPing
	kindToken
	kindTags
)

// client talks to registries the way containers/image does (registries.conf
// pull sources and insecure flags, certs.d, auth.json and credential
// helpers), but keeps one connection pool, one /v2/ ping and one token per
// scope per host for the whole run, and counts every request.
type client struct {
	sys         *types.SystemContext
	log         *slog.Logger
	timeout     time.Duration
	budget      int
	perRegistry int
	global      chan struct{}

	mu    sync.Mutex
	hosts map[string]*host
	creds map[string]*credEntry
}

// credEntry is one credential lookup, done once per run however many tags
// of the repository are checked at the same time: a credential helper is a
// process (maybe a keychain prompt), not a map read.
type credEntry struct {
	once sync.Once
	auth types.DockerAuthConfig
	err  error
}

// host is one registry endpoint as addressed on the wire.
type host struct {
	name     string // host[:port] as in registries.conf
	addr     string // host[:port] dialled
	insecure bool
	sem      chan struct{}
	http     *http.Client

	pingMu    sync.Mutex
	pinged    bool
	pingErr   error
	scheme    string
	challenge challenge

	tokenMu sync.Mutex // serializes token fetches

	mu         sync.Mutex
	pauseUntil time.Time
	counts     Counters
	tokens     map[string]string
}

type challenge struct {
	scheme string // "", "basic" or "bearer"
	params map[string]string
}

func newClient(sys *types.SystemContext, log *slog.Logger, concurrency, perRegistry, budget int, timeout time.Duration) *client {
	if concurrency < 1 {
		concurrency = 1
	}
	if perRegistry < 1 {
		perRegistry = 1
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	return &client{
		sys: sys, log: log, timeout: timeout, budget: budget, perRegistry: perRegistry,
		global: make(chan struct{}, concurrency),
		hosts:  map[string]*host{},
		creds:  map[string]*credEntry{},
	}
}

// counters returns a copy of the per-host counters.
func (c *client) counters() map[string]Counters {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Counters, len(c.hosts))
	for _, h := range c.hosts {
		h.mu.Lock()
		if h.counts.total() == 0 {
			h.mu.Unlock()
			continue // never contacted (a mirror answered first)
		}
		cur := out[h.name]
		cur.Head += h.counts.Head
		cur.Get += h.counts.Get
		cur.Ping += h.counts.Ping
		cur.Token += h.counts.Token
		cur.Tags += h.counts.Tags
		cur.RateLimited += h.counts.RateLimited
		out[h.name] = cur
		h.mu.Unlock()
	}
	return out
}

func (c *client) host(name string, insecure bool) (*host, error) {
	key := name + "|" + strconv.FormatBool(insecure)
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.hosts[key]; ok {
		return h, nil
	}
	addr := name
	if name == dockerHubDomain {
		addr = dockerHubHost
	}
	tlsc := &tls.Config{MinVersion: tls.VersionTLS12}
	dir, err := certDir(c.sys, addr)
	if err != nil {
		return nil, err
	}
	if dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsc); err != nil {
			return nil, fmt.Errorf("certificates for %s in %s: %w", name, dir, err)
		}
	}
	// Only registries.conf's insecure flag disables verification, as in
	// containers/image.
	tlsc.InsecureSkipVerify = insecure
	tr := tlsclientconfig.NewTransport()
	tr.TLSClientConfig = tlsc
	tr.MaxIdleConnsPerHost = c.perRegistry + 1
	h := &host{
		name: name, addr: addr, insecure: insecure,
		sem:    make(chan struct{}, c.perRegistry),
		http:   &http.Client{Transport: tr},
		tokens: map[string]string{},
	}
	c.hosts[key] = h
	return h, nil
}

// certDir finds the certs.d directory for a host the way containers/image
// does: DockerCertPath, DockerPerHostCertDirPath, then the certs.d search
// path (/etc/containers/certs.d, ~/.config/containers/certs.d for rootless)
// and /etc/docker/certs.d. Empty when none exists.
func certDir(sys *types.SystemContext, hostPort string) (string, error) {
	if sys != nil && sys.DockerCertPath != "" {
		return sys.DockerCertPath, nil
	}
	if sys != nil && sys.DockerPerHostCertDirPath != "" {
		return filepath.Join(sys.DockerPerHostCertDirPath, hostPort), nil
	}
	root := ""
	if sys != nil {
		root = sys.RootForImplicitAbsolutePaths
	}
	paths, err := configfile.GetSearchPaths(&configfile.File{
		Name: "certs", Extension: "d", DoNotUseExtensionForConfigName: true,
		UserId: unshare.GetRootlessUID(), RootForImplicitAbsolutePaths: root,
	})
	if err != nil {
		return "", fmt.Errorf("certs.d search path: %w", err)
	}
	candidates := append(append([]string{}, paths.DropInDirectories...), filepath.Join(root, "/etc/docker/certs.d"))
	for _, base := range candidates {
		d := filepath.Join(base, hostPort)
		if _, err := os.Stat(d); err == nil {
			return d, nil
		}
	}
	return "", nil
}

// credentials looks up named's credentials once per repository and run;
// credential helpers get the per-request timeout and are killed, with
// their process group, when it or ctx ends.
func (c *client) credentials(ctx context.Context, named reference.Named) (types.DockerAuthConfig, error) {
	key := named.Name()
	c.mu.Lock()
	e, ok := c.creds[key]
	if !ok {
		e = &credEntry{}
		c.creds[key] = e
	}
	c.mu.Unlock()
	e.once.Do(func() {
		lctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		e.auth, e.err = lookupCredentials(lctx, c.log, c.sys, named)
		if e.err != nil {
			e.err = fmt.Errorf("reading credentials for %s: %w", key, e.err)
		}
	})
	return e.auth, e.err
}

// pullCredentials returns the credentials a pull of named should use, as
// found (under the timeout, helpers killed) for the check, so that
// containers/image never runs a credential helper without a context. It
// returns nil, leaving the lookup to containers/image, when registries.conf
// gives named mirrors: containers/image looks credentials up per mirror,
// and one DockerAuthConfig would be sent to all of them.
func (c *client) pullCredentials(ctx context.Context, named reference.Named) (*types.DockerAuthConfig, error) {
	srcs, err := c.sources(named)
	if err != nil {
		return nil, err
	}
	if len(srcs) != 1 || srcs[0].named.Name() != named.Name() {
		return nil, nil
	}
	auth, err := c.credentials(ctx, named)
	if err != nil {
		return nil, err
	}
	return &auth, nil
}

// response is a fully read HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request with the host's manners: the per-run budget, the
// overall and per-host concurrency limits, the per-request timeout, and a
// pause of the whole host on 429 for Retry-After before retrying.
func (c *client) do(ctx context.Context, h *host, kind reqKind, method, u string, hdr http.Header) (*response, error) {
	for attempt := 0; ; attempt++ {
		if err := h.waitPause(ctx); err != nil {
			return nil, err
		}
		if err := h.take(kind, c.budget); err != nil {
			return nil, err
		}
		// The host's slot first, so requests queued for a busy registry do
		// not hold overall slots other registries could use.
		select {
		case h.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		select {
		case c.global <- struct{}{}:
		case <-ctx.Done():
			<-h.sem
			return nil, ctx.Err()
		}
		resp, err := c.roundTrip(ctx, h, method, u, hdr)
		<-c.global
		<-h.sem
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusTooManyRequests {
			return resp, nil
		}
		h.mu.Lock()
		h.counts.RateLimited++
		h.mu.Unlock()
		wait := retryAfter(resp.header.Get("Retry-After"), time.Now(), defaultBackoff<<attempt)
		if attempt >= max429Retries || wait > maxRetryAfter {
			return nil, fmt.Errorf("%w (%s %s, retry after %s)", ErrRateLimited, method, u, wait)
		}
		c.log.Debug("rate limited, backing off", "registry", h.name, "wait", wait)
		h.pause(wait)
	}
}

func (c *client) roundTrip(ctx context.Context, h *host, method, u string, hdr http.Header) (*response, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "stowage")
	res, err := h.http.Do(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(io.LimitReader(res.Body, maxManifestBytes))
		res.Body.Close()
		if err == nil {
			return &response{status: res.StatusCode, header: res.Header, body: body}, nil
		}
	}
	if ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w: %s %s: no answer within %s", ErrTimeout, method, u, c.timeout)
	}
	return nil, fmt.Errorf("%s %s: %w", method, u, err)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); it
// returns fallback when absent or unparsable.
func retryAfter(v string, now time.Time, fallback time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return fallback
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 86400)) * time.Second // no overflow
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
		return 0
	}
	return fallback
}

func (h *host) take(kind reqKind, budget int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if budget > 0 && h.counts.total() >= budget {
		return fmt.Errorf("%w (%d requests to %s)", ErrBudget, budget, h.name)
	}
	switch kind {
	case kindHead:
		h.counts.Head++
	case kindGet:
		h.counts.Get++
	case kindPing:
		h.counts.Ping++
	case kindToken:
		h.counts.Token++
	case kindTags:
		h.counts.Tags++
	}
	return nil
}

func (h *host) pause(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if until := time.Now().Add(d); until.After(h.pauseUntil) {
		h.pauseUntil = until
	}
}

func (h *host) waitPause(ctx context.Context) error {
	for {
		h.mu.Lock()
		d := time.Until(h.pauseUntil)
		h.mu.Unlock()
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// ping sends the /v2/ request once per host and run: it picks the scheme
// (https, then http for insecure registries) and learns the auth challenge.
func (c *client) ping(ctx context.Context, h *host) error {
	h.pingMu.Lock()
	defer h.pingMu.Unlock()
	if h.pinged {
		return h.pingErr
	}
	schemes := []string{"https"}
	if h.insecure {
		schemes = append(schemes, "http")
	}
	var errs []error
	for _, s := range schemes {
		resp, err := c.do(ctx, h, kindPing, http.MethodGet, s+"://"+h.addr+"/v2/", nil)
		if err != nil {
			if errors.Is(err, ErrBudget) || errors.Is(err, ErrRateLimited) || ctx.Err() != nil {
				return err // not cached: says nothing about the host
			}
			errs = append(errs, err)
			continue
		}
		if resp.status != http.StatusOK && resp.status != http.StatusUnauthorized {
			errs = append(errs, fmt.Errorf("pinging %s://%s/v2/: HTTP %d", s, h.addr, resp.status))
			continue
		}
		h.scheme = s
		if resp.status == http.StatusUnauthorized {
			h.challenge = parseChallenge(resp.header.Get("WWW-Authenticate"))
		}
		h.pinged, h.pingErr = true, nil
		return nil
	}
	h.pinged, h.pingErr = true, fmt.Errorf("registry %s unreachable: %w", h.name, errors.Join(errs...))
	return h.pingErr
}

// parseChallenge reads `Basic realm="x"` or `Bearer realm="x",service="y"`.
func parseChallenge(v string) challenge {
	v = strings.TrimSpace(v)
	sch, rest, _ := strings.Cut(v, " ")
	ch := challenge{scheme: strings.ToLower(sch), params: map[string]string{}}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, r, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var val string
		if strings.HasPrefix(r, `"`) {
			end := strings.Index(r[1:], `"`)
			if end < 0 {
				val, rest = r[1:], ""
			} else {
				val, rest = r[1:end+1], r[end+2:]
			}
		} else {
			val, rest, _ = strings.Cut(r, ",")
		}
		ch.params[k] = val
	}
	return ch
}

// authHeader returns the Authorization header for a pull of repo.
// A non-empty stale is a token the registry just rejected: it is replaced
// unless another request already did so.
func (c *client) authHeader(ctx context.Context, h *host, repo string, auth types.DockerAuthConfig, stale string) (string, error) {
	fresh := stale != ""
	switch h.challenge.scheme {
	case "basic":
		if auth.Username == "" {
			return "", nil
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password)), nil
	case "bearer":
		scope := "repository:" + repo + ":pull"
		// One fetch at a time per host, so tags of one repository checked
		// in parallel share a single token.
		h.tokenMu.Lock()
		defer h.tokenMu.Unlock()
		h.mu.Lock()
		tok, ok := h.tokens[scope]
		h.mu.Unlock()
		if ok && (!fresh || tok != stale) {
			return "Bearer " + tok, nil
		}
		tok, err := c.fetchToken(ctx, h, scope, auth)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		h.tokens[scope] = tok
		h.mu.Unlock()
		return "Bearer " + tok, nil
	}
	return "", nil
}

func (c *client) fetchToken(ctx context.Context, h *host, scope string, auth types.DockerAuthConfig) (string, error) {
	realm := h.challenge.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || realm == "" {
		return "", fmt.Errorf("registry %s: bad token realm %q", h.name, realm)
	}
	q := u.Query()
	if s := h.challenge.params["service"]; s != "" {
		q.Set("service", s)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	hdr := http.Header{}
	if auth.Username != "" {
		hdr.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password)))
	}
	resp, err := c.do(ctx, h, kindToken, http.MethodGet, u.String(), hdr)
	if err != nil {
		return "", err
	}
	switch {
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		return "", fmt.Errorf("%w: token for %s: HTTP %d", ErrUnauthorized, scope, resp.status)
	case resp.status != http.StatusOK:
		return "", fmt.Errorf("token for %s: HTTP %d", scope, resp.status)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(resp.body, &tr); err != nil {
		return "", fmt.Errorf("token for %s: %w", scope, err)
	}
	if tr.Token == "" {
		tr.Token = tr.AccessToken
	}
	return tr.Token, nil
}

// manifestInfo is a manifest's digest and media type, and its body when it
// was read with GET.
type manifestInfo struct {
	digest    string
	mediaType string
	body      []byte
}

// manifest sends HEAD (or GET) for /v2/<repo>/manifests/<ref> on one pull
// source. A HEAD answer without Docker-Content-Digest falls back to a GET
// and hashes the body.
func (c *client) manifest(ctx context.Context, h *host, named reference.Named, ref string, get bool) (*manifestInfo, error) {
	if err := c.ping(ctx, h); err != nil {
		return nil, err
	}
	auth, err := c.credentials(ctx, named)
	if err != nil {
		return nil, err
	}
	repo := reference.Path(named)
	u := h.scheme + "://" + h.addr + "/v2/" + repo + "/manifests/" + ref
	method, kind := http.MethodHead, kindHead
	if get {
		method, kind = http.MethodGet, kindGet
	}
	var resp *response
	stale := ""
	for try := 0; try < 2; try++ {
		authz, err := c.authHeader(ctx, h, repo, auth, stale)
		if err != nil {
			return nil, err
		}
		stale = strings.TrimPrefix(authz, "Bearer ")
		hdr := http.Header{"Accept": manifest.DefaultRequestedManifestMIMETypes}
		if authz != "" {
			hdr.Set("Authorization", authz)
		}
		if resp, err = c.do(ctx, h, kind, method, u, hdr); err != nil {
			return nil, err
		}
		// A cached bearer token may have expired: fetch a fresh one once.
		if resp.status != http.StatusUnauthorized || h.challenge.scheme != "bearer" {
			break
		}
	}
	switch resp.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, named.Name()+":"+ref)
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, fmt.Errorf("%w: %s %s: HTTP %d", ErrUnauthorized, method, u, resp.status)
	default:
		return nil, fmt.Errorf("%s %s: HTTP %d", method, u, resp.status)
	}
	mi := &manifestInfo{
		digest:    resp.header.Get("Docker-Content-Digest"),
		mediaType: manifest.NormalizedMIMEType(resp.header.Get("Content-Type")),
	}
	if get {
		mi.body = resp.body
		if mi.mediaType == "" || mi.mediaType == "application/octet-stream" || mi.mediaType == "text/plain" {
			mi.mediaType = manifest.GuessMIMEType(resp.body)
		}
		d, err := manifest.Digest(resp.body)
		if err != nil {
			return nil, fmt.Errorf("hashing manifest of %s: %w", u, err)
		}
		mi.digest = d.String()
		return mi, nil
	}
	if mi.digest == "" {
		c.log.Debug("HEAD without Docker-Content-Digest, reading the manifest", "url", u)
		return c.manifest(ctx, h, named, ref, true)
	}
	if err := validDigest(mi.digest); err != nil {
		return nil, fmt.Errorf("%s %s: Docker-Content-Digest: %w", method, u, err)
	}
	return mi, nil
}

// validDigest checks a digest a registry sent (algorithm and hex form);
// the error wraps ErrInvalidDigest and quotes the value.
func validDigest(s string) error {
	if err := digest.Digest(s).Validate(); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidDigest, s, err)
	}
	return nil
}

// source is one place to ask for a reference: a mirror or the registry.
type source struct {
	host  *host
	named reference.Named // rewritten for this endpoint
}

// sources returns the pull sources for named from registries.conf, mirrors
// first, or ErrBlocked.
func (c *client) sources(named reference.Named) ([]source, error) {
	reg, err := sysregistriesv2.FindRegistry(c.sys, named.Name())
	if err != nil {
		return nil, fmt.Errorf("reading registries.conf: %w", err)
	}
	var pss []sysregistriesv2.PullSource
	if reg == nil {
		pss = []sysregistriesv2.PullSource{{Endpoint: sysregistriesv2.Endpoint{Location: reference.Domain(named)}, Reference: named}}
	} else {
		if reg.Blocked {
			return nil, fmt.Errorf("%w: %s", ErrBlocked, reg.Location)
		}
		if pss, err = reg.PullSourcesFromReference(named); err != nil {
			return nil, fmt.Errorf("pull sources for %s: %w", named, err)
		}
	}
	out := make([]source, 0, len(pss))
	for _, ps := range pss {
		h, err := c.host(reference.Domain(ps.Reference), ps.Endpoint.Insecure)
		if err != nil {
			return nil, err
		}
		out = append(out, source{host: h, named: ps.Reference})
	}
	return out, nil
}
