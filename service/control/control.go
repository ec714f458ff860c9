// Package control serves the daemon's control API: HTTP/JSON under /v1 and
// Prometheus /metrics on a unix socket, with peers checked by SO_PEERCRED.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stowage/stowage/service/api"
	"github.com/stowage/stowage/service/runs"
	"github.com/stowage/stowage/service/scheduler"
)

// Backend is what the API exposes; the daemon implements it.
type Backend interface {
	Status() api.Status
	Jobs() ([]api.Job, error)
	Trigger(job string, dryRun bool) (*api.Run, error)
	GetRun(id string) (*api.Run, error)
	Latest(job string) (*api.Run, error)
	History(job string, limit int) ([]*api.Run, error)
	Reload() api.ReloadResult
}

// Access says who may use the API.
type Access struct {
	// System: anyone who can open the socket may read; only root may change
	// anything. Otherwise (user mode) only UID may connect at all.
	System bool
	UID    int
}

// allows reports whether a peer uid may make a request.
func (a Access) allows(uid int, mutating bool) bool {
	if a.System {
		return !mutating || uid == 0
	}
	return uid == a.UID
}

// Server is the control API server.
type Server struct {
	backend Backend
	access  Access
	log     *slog.Logger
	http    *http.Server
	conns   atomic.Int64
	// lastActive is the unix-nano time of the last connection change.
	lastActive atomic.Int64
}

type peerKey struct{}

// peer is the SO_PEERCRED of a connection; ok is false if unreadable.
type peer struct {
	uid, pid int
	ok       bool
}

// NewServer returns a server; metrics serves GET /metrics and may be nil
// (no /metrics).
func NewServer(b Backend, metrics http.Handler, a Access, log *slog.Logger) *Server {
	s := &Server{backend: b, access: a, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/jobs", s.jobs)
	mux.HandleFunc("POST /v1/jobs/{job}/runs", s.trigger)
	mux.HandleFunc("GET /v1/jobs/{job}/last", s.latest)
	mux.HandleFunc("GET /v1/runs", s.history)
	mux.HandleFunc("GET /v1/runs/{id}", s.run)
	mux.HandleFunc("POST /v1/reload", s.reload)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	// Every answer is JSON, a path that names nothing too.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("%w: %s %s", ErrNoEndpoint, r.Method, r.URL.Path))
	})
	s.http = &http.Server{
		Handler:           s.authorize(s.checkJobName(mux)),
		ReadHeaderTimeout: 10 * time.Second,
		// A client idling on a kept-alive connection must not keep an
		// idle-exiting daemon up forever.
		IdleTimeout: time.Minute,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.conns.Add(-1)
			}
			s.lastActive.Store(time.Now().UnixNano())
		},
	}
	s.lastActive.Store(time.Now().UnixNano())
	return s
}

// Serve serves l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting and waits for requests in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Conns is the number of open client connections.
func (s *Server) Conns() int64 { return s.conns.Load() }

// Idle reports whether no client is connected and none has been for d.
func (s *Server) Idle(d time.Duration) bool {
	return s.conns.Load() == 0 && time.Since(time.Unix(0, s.lastActive.Load())) >= d
}

func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return peer{}
	}
	return peer{uid: int(cred.Uid), pid: int(cred.Pid), ok: true}
}

func (s *Server) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := r.Context().Value(peerKey{}).(peer)
		mutating := r.Method != http.MethodGet && r.Method != http.MethodHead
		if !p.ok || !s.access.allows(p.uid, mutating) {
			s.log.Warn("control request refused", "uid", p.uid, "pid", p.pid, "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusForbidden, fmt.Errorf("permission denied for uid %d", p.uid))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ErrNoEndpoint answers a request for a path the API does not serve.
var ErrNoEndpoint = errors.New("no such endpoint")

// ErrEmptyJob answers a job request whose job name is empty
// (/v1/jobs//runs).
var ErrEmptyJob = errors.New("job name is empty")

// checkJobName answers requests with an empty job name itself: the mux
// would redirect /v1/jobs//runs to the cleaned /v1/jobs/runs, which a
// client then reports as a bare "404 Not Found".
func (s *Server) checkJobName(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v1/jobs/"); ok && strings.HasPrefix(rest, "/") {
			writeError(w, http.StatusBadRequest, fmt.Errorf("%w; %s", ErrEmptyJob, s.knownJobs()))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// knownJobs is "one of refresh, verify, ..." from the backend's jobs.
func (s *Server) knownJobs() string {
	jobs, err := s.backend.Jobs()
	if err != nil || len(jobs) == 0 {
		return "no jobs are known"
	}
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return "one of " + strings.Join(names, ", ")
}

// jobError makes an unknown-job error name the job and the known ones.
func (s *Server) jobError(job string, err error) error {
	if errors.Is(err, scheduler.ErrUnknownJob) {
		return fmt.Errorf("%w %q; %s", scheduler.ErrUnknownJob, job, s.knownJobs())
	}
	return err
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.backend.Status())
}

func (s *Server) jobs(w http.ResponseWriter, _ *http.Request) {
	j, err := s.backend.Jobs()
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (s *Server) trigger(w http.ResponseWriter, r *http.Request) {
	var req api.TriggerRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("decoding request: %w", err))
			return
		}
	}
	run, err := s.backend.Trigger(r.PathValue("job"), req.DryRun)
	if err != nil {
		writeError(w, statusOf(err), s.jobError(r.PathValue("job"), err))
		return
	}
	writeJSON(w, http.StatusAccepted, run)
}

func (s *Server) latest(w http.ResponseWriter, r *http.Request) {
	run, err := s.backend.Latest(r.PathValue("job"))
	if err != nil {
		writeError(w, statusOf(err), s.jobError(r.PathValue("job"), err))
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) run(w http.ResponseWriter, r *http.Request) {
	run, err := s.backend.GetRun(r.PathValue("id"))
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("invalid limit %q", v))
			return
		}
		limit = n
	}
	h, err := s.backend.History(r.URL.Query().Get("job"), limit)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	if h == nil {
		h = []*api.Run{}
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	res := s.backend.Reload()
	code := http.StatusOK
	if !res.OK {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, res)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, scheduler.ErrUnknownJob), errors.Is(err, runs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, scheduler.ErrBusy):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, api.Error{Error: err.Error()})
}
