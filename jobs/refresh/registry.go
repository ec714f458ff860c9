package refresh

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
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

	// now is the clock for token lifetimes (tests replace it).
	now func() time.Time

	mu    sync.Mutex
	hosts map[string]*host
	creds map[string]*credEntry
	// interval paces the requests to one host (0 = unpaced).
	interval time.Duration
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
	challenge challenge // the one we answer; scheme "" = none

	tokenMu sync.Mutex // serializes token fetches

	mu         sync.Mutex
	pauseUntil time.Time
	nextSlot   time.Time // earliest start of the next paced request
	counts     Counters
	tokens     map[string]bearerToken
}

// bearerToken is a token from the registry's token server and the time
// after which it is no longer used.
type bearerToken struct {
	value   string
	renewAt time.Time
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
		now:    time.Now,
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
		tokens: map[string]bearerToken{},
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
	return c.send(ctx, h, kind, method, u, hdr, nil)
}

// send is do with a request body (sent again on each retry).
func (c *client) send(ctx context.Context, h *host, kind reqKind, method, u string, hdr http.Header, body []byte) (*response, error) {
	for attempt := 0; ; attempt++ {
		if err := h.waitPause(ctx); err != nil {
			return nil, err
		}
		if err := h.take(kind, c.budget); err != nil {
			return nil, err
		}
		if err := h.waitSlot(ctx, c.interval); err != nil {
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
		resp, err := c.roundTrip(ctx, h, method, u, hdr, body)
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

func (c *client) roundTrip(ctx context.Context, h *host, method, u string, hdr http.Header, body []byte) (*response, error) {
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "stowage")
	res, err := h.http.Do(req)
	if err == nil {
		var data []byte
		data, err = io.ReadAll(io.LimitReader(res.Body, maxManifestBytes+1))
		res.Body.Close()
		if err == nil && len(data) > maxManifestBytes {
			// Never a truncated body: it would hash to a wrong digest.
			return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, u, maxManifestBytes)
		}
		if err == nil {
			return &response{status: res.StatusCode, header: res.Header, body: data}, nil
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

// waitSlot paces requests to the host: each takes the next free slot,
// interval after the previous one, and waits for it.
func (h *host) waitSlot(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		return nil
	}
	h.mu.Lock()
	var slot time.Time
	slot, h.nextSlot = takeSlot(h.nextSlot, time.Now(), interval)
	h.mu.Unlock()
	d := time.Until(slot)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeSlot is waitSlot's arithmetic: a request asking at now gets the
// host's next free slot, or now if that has passed, and the slot after it
// is interval later.
func takeSlot(next, now time.Time, interval time.Duration) (slot, after time.Time) {
	if next.Before(now) {
		next = now
	}
	return next, next.Add(interval)
}

// waitPause waits out a Retry-After pause the host asked for.
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
		h.pinged, h.pingErr = true, nil
		if resp.status == http.StatusUnauthorized {
			chs, err := parseChallenges(resp.header.Values("WWW-Authenticate"))
			if err != nil {
				h.pingErr = fmt.Errorf("registry %s: %w", h.name, err)
				return h.pingErr
			}
			// None we can answer: try anonymously, as containers/image does.
			h.challenge, _ = pickChallenge(chs)
		}
		return nil
	}
	h.pinged, h.pingErr = true, fmt.Errorf("registry %s unreachable: %w", h.name, errors.Join(errs...))
	return h.pingErr
}

// authHeader returns the Authorization header for a pull of repo.
// A non-empty stale is a token the registry just rejected: it is replaced
// unless another request already did so.
func (c *client) authHeader(ctx context.Context, h *host, repo string, auth types.DockerAuthConfig, stale string) (string, error) {
	switch h.challenge.scheme {
	case "basic":
		if auth.Username == "" && auth.Password == "" {
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
		if ok && tok.value != stale && c.now().Before(tok.renewAt) {
			return "Bearer " + tok.value, nil
		}
		tok, err := c.fetchToken(ctx, h, scope, auth)
		if err != nil {
			return "", err
		}
		h.mu.Lock()
		h.tokens[scope] = tok
		h.mu.Unlock()
		return "Bearer " + tok.value, nil
	}
	return "", nil
}

// tokenClientID identifies stowage to OAuth2 token servers.
const tokenClientID = "stowage"

// fetchToken gets a bearer token for scope as containers/image does: with
// an identity token (auth.json "identitytoken", or a credential helper's
// "<token>" user), an OAuth2 refresh-token grant POSTed to the realm, and
// never the password; otherwise a GET of the realm with Basic credentials
// (the distribution token spec). Unlike containers/image, a token server
// without the OAuth2 endpoint (404/405 to the POST) gets the GET when a
// username and password are configured as well.
func (c *client) fetchToken(ctx context.Context, h *host, scope string, auth types.DockerAuthConfig) (bearerToken, error) {
	realm := h.challenge.params["realm"]
	u, err := url.Parse(realm)
	if err != nil || realm == "" || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return bearerToken{}, fmt.Errorf("registry %s: bad token realm %q in its bearer challenge", h.name, realm)
	}
	service := h.challenge.params["service"]
	start := c.now()
	var resp *response
	if auth.IdentityToken != "" {
		form := url.Values{}
		form.Set("grant_type", "refresh_token")
		form.Set("refresh_token", auth.IdentityToken)
		form.Set("client_id", tokenClientID)
		if service != "" {
			form.Set("service", service)
		}
		form.Set("scope", scope)
		hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		if resp, err = c.send(ctx, h, kindToken, http.MethodPost, u.String(), hdr, []byte(form.Encode())); err != nil {
			return bearerToken{}, err
		}
		noOAuth := resp.status == http.StatusNotFound || resp.status == http.StatusMethodNotAllowed
		if !noOAuth || auth.Username == "" || auth.Password == "" {
			return parseTokenAnswer(resp, scope, start)
		}
		c.log.Debug("token server has no OAuth2 endpoint, using the password", "registry", h.name, "status", resp.status)
	}
	q := u.Query()
	if auth.Username != "" {
		q.Set("account", auth.Username)
	}
	if service != "" {
		q.Set("service", service)
	}
	q.Set("scope", scope)
	u.RawQuery = q.Encode()
	hdr := http.Header{}
	if auth.Username != "" && auth.Password != "" {
		hdr.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password)))
	}
	if resp, err = c.do(ctx, h, kindToken, http.MethodGet, u.String(), hdr); err != nil {
		return bearerToken{}, err
	}
	return parseTokenAnswer(resp, scope, start)
}

const (
	// defaultTokenLifetime applies when a token answer has no expires_in
	// (the distribution token spec's default).
	defaultTokenLifetime = 60 * time.Second
	// maxTokenRenewMargin bounds how early a token is renewed.
	maxTokenRenewMargin = 10 * time.Second
	maxTokenLifetime    = 24 * time.Hour
)

// parseTokenAnswer reads a token server's answer to a request sent at
// start. The token is used until a tenth of its lifetime (at most 10 s)
// before expires_in runs out, counted from start rather than the server's
// issued_at, so a skewed server clock cannot make it live longer.
func parseTokenAnswer(resp *response, scope string, start time.Time) (bearerToken, error) {
	switch {
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		return bearerToken{}, fmt.Errorf("%w: token for %s: HTTP %d", ErrUnauthorized, scope, resp.status)
	case resp.status != http.StatusOK:
		return bearerToken{}, fmt.Errorf("token for %s: HTTP %d", scope, resp.status)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(resp.body, &tr); err != nil {
		return bearerToken{}, fmt.Errorf("token for %s: decoding the token server's answer: %w", scope, err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return bearerToken{}, fmt.Errorf("token for %s: the token server's answer holds no token", scope)
	}
	life := defaultTokenLifetime
	if tr.ExpiresIn > 0 {
		life = time.Duration(min(tr.ExpiresIn, int64(maxTokenLifetime/time.Second))) * time.Second
	}
	return bearerToken{value: tok, renewAt: start.Add(life - min(life/10, maxTokenRenewMargin))}, nil
}

// repoRequest sends method for path below /v2/<repository>/ (such as
// "manifests/latest" or "tags/list?n=100") on h, authenticated with
// named's credentials: the /v2/ ping first, then the registry's challenge
// answered (a bearer token for the repository's pull scope, fetched again
// once if the registry rejects a cached one). The request is counted as
// kind against the run's budget and limits. It returns the answer whatever
// its status, and the URL it used.
func (c *client) repoRequest(ctx context.Context, h *host, named reference.Named, kind reqKind, method, path string, hdr http.Header) (*response, string, error) {
	if err := c.ping(ctx, h); err != nil {
		return nil, "", err
	}
	u := h.scheme + "://" + h.addr + "/v2/" + reference.Path(named) + "/" + path
	resp, err := c.authedRequest(ctx, h, named, kind, method, u, hdr)
	return resp, u, err
}

// authedRequest sends method u (a URL on h, already pinged) with the
// host's auth for named's repository, fetching a fresh bearer token once
// when the cached one is refused. The answer comes back whatever its status.
func (c *client) authedRequest(ctx context.Context, h *host, named reference.Named, kind reqKind, method, u string, hdr http.Header) (*response, error) {
	auth, err := c.credentials(ctx, named)
	if err != nil {
		return nil, err
	}
	repo := reference.Path(named)
	var resp *response
	stale := ""
	for try := 0; try < 2; try++ {
		authz, err := c.authHeader(ctx, h, repo, auth, stale)
		if err != nil {
			return nil, err
		}
		stale = strings.TrimPrefix(authz, "Bearer ")
		rh := hdr.Clone()
		if rh == nil {
			rh = http.Header{}
		}
		if authz != "" {
			rh.Set("Authorization", authz)
		}
		if resp, err = c.do(ctx, h, kind, method, u, rh); err != nil {
			return nil, err
		}
		// A cached bearer token may have been revoked: fetch a fresh one once.
		if resp.status != http.StatusUnauthorized || h.challenge.scheme != "bearer" {
			break
		}
	}
	return resp, nil
}

// noteDigestFromGet is the per-reference note for a digest computed from
// the manifest body.
const noteDigestFromGet = "digest from GET: registry omitted Docker-Content-Digest"

// manifestInfo is a manifest's digest and media type, and its body when it
// was read with GET.
type manifestInfo struct {
	digest    string
	mediaType string
	body      []byte
	// note says how the digest was found when that was not the usual way.
	note string
}

// manifest sends HEAD (or GET) for /v2/<repo>/manifests/<ref> on one pull
// source. A HEAD answer without Docker-Content-Digest falls back to a GET
// (counted against the budget) whose body is checked and hashed.
func (c *client) manifest(ctx context.Context, h *host, named reference.Named, ref string, get bool) (*manifestInfo, error) {
	method, kind := http.MethodHead, kindHead
	if get {
		method, kind = http.MethodGet, kindGet
	}
	resp, u, err := c.repoRequest(ctx, h, named, kind, method, "manifests/"+ref,
		http.Header{"Accept": manifest.DefaultRequestedManifestMIMETypes})
	if err != nil {
		return nil, err
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
	if get {
		mi, err := manifestFromBody(resp)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", u, err)
		}
		return mi, nil
	}
	mi := &manifestInfo{
		digest:    resp.header.Get("Docker-Content-Digest"),
		mediaType: manifest.NormalizedMIMEType(resp.header.Get("Content-Type")),
	}
	if mi.digest == "" {
		c.log.Debug("HEAD without Docker-Content-Digest, reading the manifest", "url", u)
		if mi, err = c.manifest(ctx, h, named, ref, true); err != nil {
			return nil, err
		}
		mi.note = noteDigestFromGet
		return mi, nil
	}
	if err := validDigest(mi.digest); err != nil {
		return nil, fmt.Errorf("%s %s: Docker-Content-Digest: %w", method, u, err)
	}
	return mi, nil
}

// knownManifestTypes are the media types whose body GuessMIMEType tells
// apart reliably.
var knownManifestTypes = map[string]bool{
	manifest.DockerV2Schema2MediaType: true,
	manifest.DockerV2ListMediaType:    true,
	imgspecv1.MediaTypeImageManifest:  true,
	imgspecv1.MediaTypeImageIndex:     true,
}

// manifestFromBody checks a manifest GET answer and hashes its body: the
// body must be as long as Content-Length says, be the kind of manifest
// Content-Type says, and hash to the Docker-Content-Digest when the
// registry sent one.
func manifestFromBody(resp *response) (*manifestInfo, error) {
	if cl := resp.header.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n != int64(len(resp.body)) {
			return nil, fmt.Errorf("manifest body is %d bytes, Content-Length says %q", len(resp.body), cl)
		}
	}
	guessed := manifest.GuessMIMEType(resp.body)
	if guessed == "" {
		return nil, fmt.Errorf("the body (%d bytes) is not a manifest", len(resp.body))
	}
	// NormalizedMIMEType maps generic types to schema1; look at the
	// header itself first.
	mt, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type"))
	switch {
	case mt == "" || mt == "application/octet-stream" || mt == "text/plain" || mt == "application/json":
		mt = guessed
	case knownManifestTypes[mt] && knownManifestTypes[guessed] && mt != guessed:
		return nil, fmt.Errorf("Content-Type is %s, but the body is a %s", mt, guessed)
	default:
		mt = manifest.NormalizedMIMEType(mt)
	}
	if hd := resp.header.Get("Docker-Content-Digest"); hd != "" {
		if err := validDigest(hd); err != nil {
			return nil, fmt.Errorf("Docker-Content-Digest: %w", err)
		}
		if !bodyMatches(resp.body, digest.Digest(hd)) {
			return nil, fmt.Errorf("the body does not hash to its Docker-Content-Digest %s", hd)
		}
		return &manifestInfo{digest: hd, mediaType: mt, body: resp.body}, nil
	}
	d, err := manifest.Digest(resp.body)
	if err != nil {
		return nil, fmt.Errorf("hashing the manifest: %w", err)
	}
	if err := validDigest(d.String()); err != nil {
		return nil, err
	}
	return &manifestInfo{digest: d.String(), mediaType: mt, body: resp.body}, nil
}

// bodyMatches reports whether a manifest hashes to d (validated), in d's
// algorithm: containers/image's MatchesDigest knows sha256 only (and
// schema1's signatures, which are not hashed).
func bodyMatches(body []byte, d digest.Digest) bool {
	if d.Algorithm() == digest.SHA256 {
		ok, err := manifest.MatchesDigest(body, d)
		return err == nil && ok
	}
	return d.Algorithm().FromBytes(body) == d
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
