// Package client talks to the daemon's control API over its unix socket;
// the CLI commands (status, jobs, trigger, report, reload) use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stowage/stowage/service/api"
)

// ErrNotFound is returned for an unknown job or run (HTTP 404).
var ErrNotFound = errors.New("not found")

// ErrBusy is returned when the job is already running or queued (HTTP 409).
var ErrBusy = errors.New("busy")

// ErrDenied is returned when the daemon refuses the caller (HTTP 403).
var ErrDenied = errors.New("permission denied")

// ErrEmptyJob is returned, without asking the daemon, for an empty job name.
var ErrEmptyJob = errors.New("job name is empty")

// ErrEmptyRun is returned, without asking the daemon, for an empty run id.
var ErrEmptyRun = errors.New("run id is empty")

// emptyJob is ErrEmptyJob with the job names to choose from.
func (c *Client) emptyJob() error {
	if len(c.jobs) == 0 {
		return ErrEmptyJob
	}
	return fmt.Errorf("%w; one of %s", ErrEmptyJob, strings.Join(c.jobs, ", "))
}

// Client is a control API client; safe for concurrent use.
type Client struct {
	socket string
	jobs   []string
	http   *http.Client
}

// New returns a client for the daemon listening on socket; jobs are the
// job names an empty name's error lists (jobspec.Registry.Names).
func New(socket string, jobs []string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{socket: socket, jobs: jobs, http: &http.Client{Transport: tr}}
}

// Socket is the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// Close drops idle connections (a socket-activated daemon can then idle out).
func (c *Client) Close() { c.http.CloseIdleConnections() }

// Error is an error response from the daemon.
type Error struct {
	Code    int
	Message string
}

// Error returns the daemon's message.
func (e *Error) Error() string { return e.Message }

// Unwrap maps status codes to the package's sentinels.
func (e *Error) Unwrap() error {
	switch e.Code {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrBusy
	case http.StatusForbidden:
		return ErrDenied
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://stowage"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("connecting to the stowage daemon at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e api.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		ce := &Error{Code: resp.StatusCode, Message: e.Error}
		// A failed reload still carries its result.
		if out != nil && resp.StatusCode == http.StatusUnprocessableEntity {
			_ = json.Unmarshal(data, out)
		}
		return ce
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var s api.Status
	return &s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Jobs lists the jobs with their schedules and last runs.
func (c *Client) Jobs(ctx context.Context) ([]api.Job, error) {
	var j []api.Job
	return j, c.do(ctx, http.MethodGet, "/v1/jobs", nil, &j)
}

// Trigger starts a run of job now and returns it (queued or running).
func (c *Client) Trigger(ctx context.Context, job string, dryRun bool) (*api.Run, error) {
	if job == "" {
		return nil, c.emptyJob()
	}
	var r api.Run
	return &r, c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(job)+"/runs", api.TriggerRequest{DryRun: dryRun}, &r)
}

// Run returns one run with its report.
func (c *Client) Run(ctx context.Context, id string) (*api.Run, error) {
	if id == "" {
		return nil, ErrEmptyRun
	}
	var r api.Run
	return &r, c.do(ctx, http.MethodGet, "/v1/runs/"+url.PathEscape(id), nil, &r)
}

// Latest returns job's newest run.
func (c *Client) Latest(ctx context.Context, job string) (*api.Run, error) {
	if job == "" {
		return nil, c.emptyJob()
	}
	var r api.Run
	return &r, c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(job)+"/last", nil, &r)
}

// History lists up to limit runs, newest first ("" = all jobs).
func (c *Client) History(ctx context.Context, job string, limit int) ([]*api.Run, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if job != "" {
		q.Set("job", job)
	}
	var h []*api.Run
	return h, c.do(ctx, http.MethodGet, "/v1/runs?"+q.Encode(), nil, &h)
}

// Reload asks the daemon to re-read its policy. A rejected policy returns
// the result (OK false, the error) and an *Error.
func (c *Client) Reload(ctx context.Context) (*api.ReloadResult, error) {
	var r api.ReloadResult
	return &r, c.do(ctx, http.MethodPost, "/v1/reload", nil, &r)
}

// Metrics returns the Prometheus text exposition.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://stowage/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("connecting to the stowage daemon at %s: %w", c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", &Error{Code: resp.StatusCode, Message: resp.Status}
	}
	return string(b), nil
}

// Wait polls run id until it has ended (or ctx ends).
func (c *Client) Wait(ctx context.Context, id string) (*api.Run, error) {
	delay := 50 * time.Millisecond
	for {
		r, err := c.Run(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if err == nil && r.Outcome.Done() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}
