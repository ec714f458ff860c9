package refresh

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"go.podman.io/image/v5/docker/reference"
)

const (
	// tagsPageSize is the n asked for per tag-list page. Registries may
	// send fewer (Docker Hub caps pages) or ignore n and send every tag.
	tagsPageSize = 1000
	// maxTagPages bounds one repository's listing: a repository with more
	// tags than this reports what the pages held.
	maxTagPages = 20
)

// NextLink returns the target of the rel="next" entry of an RFC 5988 Link
// header, or "" when there is none. Pure.
func NextLink(header string) string {
	for _, part := range splitLinks(header) {
		part = strings.TrimSpace(part)
		if !strings.HasPrefix(part, "<") {
			continue
		}
		end := strings.Index(part, ">")
		if end < 0 {
			continue
		}
		target := part[1:end]
		for _, p := range strings.Split(part[end+1:], ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
				continue
			}
			for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
				if strings.EqualFold(rel, "next") {
					return target
				}
			}
		}
	}
	return ""
}

// splitLinks splits a Link header at the commas between entries (not those
// inside <...> or quotes).
func splitLinks(h string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i, r := range h {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '<':
			depth++
		case r == '>' && depth > 0:
			depth--
		case r == ',' && depth == 0:
			out = append(out, h[start:i])
			start = i + 1
		}
	}
	return append(out, h[start:])
}

// NextPage returns the URL of the page after current: the Link header's
// next target resolved against current when there is one; else, when the
// page was full (n tags), the same URL with last set to the page's last
// tag; else "" (the listing is complete). Pure.
func NextPage(current *url.URL, link string, page []string, n int) (*url.URL, error) {
	if next := NextLink(link); next != "" {
		u, err := current.Parse(next)
		if err != nil {
			return nil, fmt.Errorf("tag list Link %q: %w", next, err)
		}
		// Never follow a registry to another host with our credentials.
		if u.Host != current.Host || u.Scheme != current.Scheme {
			return nil, fmt.Errorf("tag list Link %q leaves %s", next, current.Host)
		}
		return u, nil
	}
	if len(page) == 0 || len(page) != n {
		return nil, nil
	}
	u := *current
	q := u.Query()
	q.Set("n", strconv.Itoa(n))
	q.Set("last", page[len(page)-1])
	u.RawQuery = q.Encode()
	return &u, nil
}

// tagListing is what one repository's listing gave.
type tagListing struct {
	tags  []string
	pages int
	// truncated: maxTagPages were read and the registry had more.
	truncated bool
}

// listTags lists named's tags on one pull source, following pagination,
// with the client's budget, limits and auth.
func (c *client) listTags(ctx context.Context, h *host, named reference.Named, pageSize int) (*tagListing, error) {
	if err := c.ping(ctx, h); err != nil {
		return nil, err
	}
	repo := reference.Path(named)
	u, err := url.Parse(h.scheme + "://" + h.addr + "/v2/" + repo + "/tags/list?n=" + strconv.Itoa(pageSize))
	if err != nil {
		return nil, fmt.Errorf("tag list URL of %s: %w", named.Name(), err)
	}
	out := &tagListing{}
	seen := map[string]bool{}
	for u != nil {
		if out.pages == maxTagPages {
			out.truncated = true
			break
		}
		resp, err := c.authedRequest(ctx, h, named, kindTags, http.MethodGet, u.String(), http.Header{"Accept": {"application/json"}})
		if err != nil {
			return nil, err
		}
		out.pages++
		switch resp.status {
		case http.StatusOK:
		case http.StatusNotFound:
			return nil, fmt.Errorf("%w: %s", ErrNotFound, named.Name())
		case http.StatusUnauthorized, http.StatusForbidden:
			return nil, fmt.Errorf("%w: GET %s: HTTP %d", ErrUnauthorized, u, resp.status)
		default:
			return nil, fmt.Errorf("GET %s: HTTP %d", u, resp.status)
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(resp.body, &body); err != nil {
			return nil, fmt.Errorf("tag list of %s: %w", named.Name(), err)
		}
		fresh := 0
		for _, t := range body.Tags {
			if !seen[t] {
				seen[t] = true
				out.tags = append(out.tags, t)
				fresh++
			}
		}
		if fresh == 0 {
			break // a registry that ignores last would loop forever
		}
		if u, err = NextPage(u, resp.header.Get("Link"), body.Tags, pageSize); err != nil {
			return nil, err
		}
	}
	return out, nil
}
