// Package podmanapi is a small client for podman's libpod REST API over its
// unix socket: version and info, volumes (list, inspect, delete), system df
// and the events log. It also finds a podman socket that answers, or starts a
// private `podman system service` for the duration of a run (service.go).
//
// Every path carries the /v4.0.0/ prefix, which podman 4.3 through 5.x serve.
package podmanapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiPrefix is the libpod API version every request is sent under.
const apiPrefix = "/v4.0.0/libpod"

// Sentinel errors; check them with errors.Is.
var (
	// ErrVolumeInUse is returned by RemoveVolume when podman answers 409:
	// a container (in any state) references the volume.
	ErrVolumeInUse = errors.New("volume is in use")
	// ErrNotFound is returned when podman answers 404 (no such volume).
	ErrNotFound = errors.New("no such object")
)

// APIError is a non-success answer from podman.
type APIError struct {
	Method, Path string
	Status       int
	Message      string // podman's "message" (or the raw body)
}

func (e *APIError) Error() string {
	return fmt.Sprintf("podman API %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Message)
}

// Unwrap maps the status to the package's sentinels.
func (e *APIError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrVolumeInUse
	}
	return nil
}

// Client talks to one podman API socket. It is safe for concurrent use.
type Client struct {
	socket  string
	timeout time.Duration
	hc      *http.Client
}

// DefaultTimeout bounds each request when New is given no timeout.
const DefaultTimeout = 2 * time.Minute

// New returns a client for the podman API socket at path. Each request is
// bounded by timeout (DefaultTimeout when <= 0) and by its context.
func New(socket string, timeout time.Duration) *Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns: 8,
		// Keep-alive for concurrent requests too (the default keeps 2).
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &Client{socket: socket, timeout: timeout, hc: &http.Client{Transport: tr}}
}

// Socket is the path of the unix socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// do sends one request and decodes a JSON answer into out (when non-nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := "http://d" + apiPrefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return fmt.Errorf("podman API %s %s: %w", method, path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("podman API %s %s via %s: %w", method, path, c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(body))
		var pe struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &pe) == nil && pe.Message != "" {
			msg = pe.Message
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Message: msg}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("podman API %s %s: decoding answer: %w", method, path, err)
	}
	return nil
}

// filtersParam encodes libpod filters ({"key":["v1","v2"]}) as a query value.
func filtersParam(q url.Values, f map[string][]string) {
	if len(f) == 0 {
		return
	}
	b, _ := json.Marshal(f) // a map of string slices always marshals
	q.Set("filters", string(b))
}

// Version is what podman reports about itself.
type Version struct {
	Version       string `json:"Version"`    // e.g. "4.3.1"
	APIVersion    string `json:"ApiVersion"` // Docker-compatible API version
	MinAPIVersion string `json:"MinAPIVersion"`
	Os            string `json:"Os"`
	Arch          string `json:"Arch"`
}

// Ping checks that podman answers (GET /libpod/_ping) and returns the
// libpod API version it announces (Libpod-Api-Version), which is podman's
// own version ("4.3.1"). It is cheap, unlike Version: podman 4.3 queries
// the package manager for conmon and the OCI runtime on every /version.
func (c *Client) Ping(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d"+apiPrefix+"/_ping", nil)
	if err != nil {
		return "", fmt.Errorf("podman API ping: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("podman API GET /_ping via %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", &APIError{Method: http.MethodGet, Path: "/_ping", Status: resp.StatusCode, Message: resp.Status}
	}
	v := resp.Header.Get("Libpod-Api-Version")
	if v == "" {
		return "", fmt.Errorf("podman API ping via %s: no Libpod-Api-Version header (not a podman socket?)", c.socket)
	}
	return v, nil
}

// Version asks podman for its full version record (GET /libpod/version);
// slow on podman 4.3 (see Ping).
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	err := c.do(ctx, http.MethodGet, "/version", nil, &v)
	return v, err
}

// Info is the subset of `podman info` stowage needs.
type Info struct {
	Host struct {
		Security struct {
			Rootless bool `json:"rootless"`
		} `json:"security"`
	} `json:"host"`
	Store struct {
		GraphDriverName string `json:"graphDriverName"`
		GraphRoot       string `json:"graphRoot"`
		RunRoot         string `json:"runRoot"`
		VolumePath      string `json:"volumePath"`
	} `json:"store"`
	Version struct {
		Version    string `json:"Version"`
		APIVersion string `json:"APIVersion"`
	} `json:"version"`
}

// Info returns podman's host and store information (GET /libpod/info).
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	err := c.do(ctx, http.MethodGet, "/info", nil, &i)
	return i, err
}

// Volume is one podman volume as listed or inspected.
type Volume struct {
	Name       string            `json:"Name"`
	Driver     string            `json:"Driver"`
	Mountpoint string            `json:"Mountpoint"`
	CreatedAt  time.Time         `json:"CreatedAt"`
	Labels     map[string]string `json:"Labels"`
	Options    map[string]string `json:"Options"`
	// Anonymous is true for volumes podman created for a container's
	// `-v /path` or image VOLUME without a user-given name.
	Anonymous  bool `json:"Anonymous"`
	MountCount uint `json:"MountCount"`
}

// Volumes lists volumes matching libpod's volume filters (nil = all), e.g.
// {"dangling": {"true"}} for volumes no container references.
func (c *Client) Volumes(ctx context.Context, filters map[string][]string) ([]Volume, error) {
	q := url.Values{}
	filtersParam(q, filters)
	var vs []Volume
	if err := c.do(ctx, http.MethodGet, "/volumes/json", q, &vs); err != nil {
		return nil, err
	}
	return vs, nil
}

// InspectVolume returns one volume; ErrNotFound when it does not exist.
func (c *Client) InspectVolume(ctx context.Context, name string) (Volume, error) {
	var v Volume
	err := c.do(ctx, http.MethodGet, "/volumes/"+url.PathEscape(name)+"/json", nil, &v)
	return v, err
}

// RemoveVolume deletes a volume without force: podman refuses (409,
// ErrVolumeInUse) when any container references it. ErrNotFound when it is
// already gone.
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/volumes/"+url.PathEscape(name), nil, nil)
}

// VolumeUsage is one volume's entry in system df.
type VolumeUsage struct {
	VolumeName      string `json:"VolumeName"`
	Links           int    `json:"Links"` // containers referencing it
	Size            int64  `json:"Size"`  // bytes on disk
	ReclaimableSize int64  `json:"ReclaimableSize"`
}

// SystemDF is the subset of `podman system df` stowage needs.
type SystemDF struct {
	Volumes []VolumeUsage `json:"Volumes"`
}

// SystemDF returns disk usage (GET /libpod/system/df). It walks every
// volume's files, so it can take a while on big volumes.
func (c *Client) SystemDF(ctx context.Context) (SystemDF, error) {
	var df SystemDF
	err := c.do(ctx, http.MethodGet, "/system/df", nil, &df)
	return df, err
}

// Event is one entry of podman's events log.
type Event struct {
	Type   string    // "container", "image", "volume", ...
	Action string    // "create", "start", "remove", ...
	ID     string    // container (or image/volume) ID
	Name   string    // container name (Attributes "name")
	Image  string    // image name the container was created from ("from")
	Time   time.Time // with nanoseconds when podman has them
	// Attributes are the event's raw attributes (image, name, podId, labels...).
	Attributes map[string]string
}

// EventsOptions select events. Zero values mean "no bound"/"no filter".
type EventsOptions struct {
	Since, Until time.Time
	// Filters are libpod event filters, e.g. {"type": {"container"},
	// "event": {"create", "start"}}.
	Filters map[string][]string
}

// ContainerUseFilters selects the container create and start events, the
// only record podman keeps of an image being used (also by `podman run --rm`).
var ContainerUseFilters = map[string][]string{"type": {"container"}, "event": {"create", "start"}}

// Events returns the events recorded in podman's events log (GET
// /libpod/events?stream=false), oldest first. With Filters =
// ContainerUseFilters each event's Image is the image name the container was
// created from and Time is when it happened: the last-use record of images.
// Podman's log may be rotated or disabled (events_logger = "none"), so an
// empty answer means "unknown", not "never used".
func (c *Client) Events(ctx context.Context, o EventsOptions) ([]Event, error) {
	q := url.Values{"stream": {"false"}}
	if !o.Since.IsZero() {
		q.Set("since", fmt.Sprint(o.Since.Unix()))
	}
	if !o.Until.IsZero() {
		q.Set("until", fmt.Sprint(o.Until.Unix()))
	}
	filtersParam(q, o.Filters)

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := "http://d" + apiPrefix + "/events?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("podman API events: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("podman API GET /events via %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, &APIError{Method: http.MethodGet, Path: "/events", Status: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	// The answer is a stream of JSON objects, one per event.
	dec := json.NewDecoder(resp.Body)
	var evs []Event
	for {
		var w wireEvent
		if err := dec.Decode(&w); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("podman API events: decoding: %w", err)
		}
		evs = append(evs, w.event())
	}
	return evs, nil
}

// wireEvent is the Docker-compatible event JSON libpod sends.
type wireEvent struct {
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Status string `json:"status"`
	ID     string `json:"id"`
	From   string `json:"from"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	Time     int64 `json:"time"`
	TimeNano int64 `json:"timeNano"`
}

func (w wireEvent) event() Event {
	e := Event{Type: w.Type, Action: w.Action, ID: w.Actor.ID, Image: w.From, Attributes: w.Actor.Attributes}
	if e.Action == "" {
		e.Action = w.Status
	}
	if e.ID == "" {
		e.ID = w.ID
	}
	if w.Actor.Attributes != nil {
		e.Name = w.Actor.Attributes["name"]
		if e.Image == "" {
			e.Image = w.Actor.Attributes["image"]
		}
	}
	switch {
	case w.TimeNano != 0:
		e.Time = time.Unix(0, w.TimeNano)
	case w.Time != 0:
		e.Time = time.Unix(w.Time, 0)
	}
	return e
}
