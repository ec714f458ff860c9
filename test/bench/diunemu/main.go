// Command diunemu emulates the registry request pattern of Diun's
// watch_repo mode, as its documentation and source describe it, for the
// refresh benchmark (test/bench/refresh_newer.sh). It is not Diun: it sends
// the same kinds of requests in the same numbers, no more.
//
// Per repository: one full tags/list walk (following Link headers, as
// containers/image's docker.GetRepositoryTags does), preceded by the /v2/
// ping containers/image sends for each new client. Per tag of the
// listing: containers/image's docker.GetDigest, i.e. a /v2/ ping and a
// HEAD of the manifest (Diun's compare_digest, on by default, then skips
// the GET when the digest is unchanged, as it is here). Requests run on a
// pool of -workers goroutines (Diun's watch.workers default is 10) with
// keep-alive connections, which is generous to the emulated pattern.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

type counts struct{ ping, head, tags atomic.Int64 }

func main() {
	var (
		registry = flag.String("registry", "", "host:port of a plain-HTTP registry")
		repos    = flag.String("repos", "", "comma-separated repository names")
		workers  = flag.Int("workers", 10, "concurrent requests")
	)
	flag.Parse()
	if *registry == "" || *repos == "" {
		fmt.Fprintln(os.Stderr, "diunemu: -registry and -repos are required")
		os.Exit(2)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *workers}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	base := "http://" + *registry
	var n counts
	var failed atomic.Int64
	get := func(method, u string, hdr string) (*http.Response, []byte, error) {
		req, err := http.NewRequest(method, u, nil)
		if err != nil {
			return nil, nil, err
		}
		if hdr != "" {
			req.Header.Set("Accept", hdr)
		}
		res, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		return res, body, err
	}
	ping := func() {
		n.ping.Add(1)
		if _, _, err := get(http.MethodGet, base+"/v2/", ""); err != nil {
			failed.Add(1)
		}
	}

	t0 := time.Now()
	jobs := make(chan func())
	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				j()
			}
		}()
	}
	var listWG sync.WaitGroup
	for _, repo := range strings.Split(*repos, ",") {
		listWG.Add(1)
		jobs <- func() {
			defer listWG.Done()
			ping()
			var tags []string
			next := base + "/v2/" + repo + "/tags/list"
			for next != "" {
				n.tags.Add(1)
				res, body, err := get(http.MethodGet, next, "application/json")
				if err != nil || res.StatusCode != http.StatusOK {
					failed.Add(1)
					return
				}
				var l struct {
					Tags []string `json:"tags"`
				}
				if json.Unmarshal(body, &l) != nil {
					failed.Add(1)
					return
				}
				tags = append(tags, l.Tags...)
				next = ""
				if link := res.Header.Get("Link"); link != "" {
					if s, e := strings.Index(link, "<"), strings.Index(link, ">"); s >= 0 && e > s {
						if u, err := url.Parse(base); err == nil {
							if r, err := u.Parse(link[s+1 : e]); err == nil {
								next = r.String()
							}
						}
					}
				}
			}
			for _, tag := range tags {
				listWG.Add(1)
				go func() {
					jobs <- func() {
						defer listWG.Done()
						ping()
						n.head.Add(1)
						res, _, err := get(http.MethodHead, base+"/v2/"+repo+"/manifests/"+tag, accept)
						if err != nil || res.StatusCode != http.StatusOK || res.Header.Get("Docker-Content-Digest") == "" {
							failed.Add(1)
						}
					}
				}()
			}
		}
	}
	listWG.Wait()
	close(jobs)
	wg.Wait()
	el := time.Since(t0)
	fmt.Printf("%.3f %d %d %d %d\n", el.Seconds(), n.ping.Load(), n.head.Load(), n.tags.Load(), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}
