package testenv

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
)

// PutBlob uploads data as a blob of repo (monolithic upload, plain HTTP,
// no auth) and returns its digest.
func (r *Registry) PutBlob(t testing.TB, repo string, data []byte) string {
	t.Helper()
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(data))
	res := r.do(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", "", nil, http.StatusAccepted)
	loc, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	r.do(t, http.MethodPut, loc.RequestURI(), "application/octet-stream", data, http.StatusCreated)
	return d
}

// PutManifest stores body as a manifest of repo under ref (a tag or its
// digest) with Content-Type mediaType and returns its digest.
func (r *Registry) PutManifest(t testing.TB, repo, ref, mediaType string, body []byte) string {
	t.Helper()
	res := r.do(t, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, mediaType, body, http.StatusCreated)
	return res.Header.Get("Docker-Content-Digest")
}

// GetManifest returns the manifest of repo at ref as stored, with its
// media type.
func (r *Registry) GetManifest(t testing.TB, repo, ref string) ([]byte, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+r.Addr+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "+
		"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s:%s: HTTP %d %s %v", repo, ref, res.StatusCode, body, err)
	}
	return body, res.Header.Get("Content-Type")
}

func (r *Registry) do(t testing.TB, method, path, contentType string, body []byte, want int) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.Addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, res.StatusCode, want, msg)
	}
	return res
}
