// Package liveview serves the live view of a broker (marvelo-broker --ui ADDR): a read-only web
// page showing the pipeline graph with each job's state, worker and rates, the workers with their
// load, the event timeline and a log tail, updated live by polling JSON endpoints. The page is
// plain HTML, CSS and JavaScript embedded in the binary: no build step, nothing fetched from
// elsewhere.
//
// It reads the broker only through Source and admits clients only through Options.Authorize: it
// imports neither the broker nor the worker (DESIGN.md §11).
package liveview

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Source is what the live view reads of a broker: the same status, workers and logs the API
// serves to the marvelo command.
type Source interface {
	// Pipelines returns the status of every pipeline with its events and pipe statistics.
	Pipelines(ctx context.Context) ([]protocol.PipelineStatus, error)
	// Workers returns the workers the broker knows.
	Workers(ctx context.Context) ([]protocol.WorkerStatus, error)
	// Document returns the document of a pipeline's current run: the graph.
	Document(ctx context.Context, pipeline string) (*pipeline.Pipeline, error)
	// Logs returns at most tail of the last log lines of a pipeline written since a time (its
	// run's submission), oldest first.
	Logs(ctx context.Context, pipeline string, since time.Time, tail int) ([]protocol.LogLine, error)
}

// Options configure the live view.
type Options struct {
	// Addr is host:port to listen on (Serve); port 0 picks one.
	Addr string
	// Source is the broker read.
	Source Source
	// Authorize reports whether a token may read the view: the broker's operator token, or an
	// operator or read-only identity's token (protocol.IdentityToken). Nil serves everyone, and
	// Serve then refuses to listen beyond loopback.
	Authorize func(token string) bool
	// Logger logs failures to read the broker (default slog.Default()).
	Logger *slog.Logger
	// MaxAge is how long a snapshot of the broker serves requests before it is read again
	// (default 500 ms): several open pages cost the broker no more than one.
	MaxAge time.Duration
}

// Realm is the realm of the HTTP basic authentication challenge.
const Realm = "marvelo live view"

// MaxTail is the most log lines /api/logs returns.
const MaxTail = 1000

//go:embed static
var static embed.FS

// handler serves the page and the JSON endpoints.
type handler struct {
	opts  Options
	log   *slog.Logger
	files http.Handler

	mu     sync.Mutex // one read of the broker at a time
	snap   *snapshot
	rates  rater
	graphs map[string]graphEntry // pipeline name → the graph of its current run
}

// New returns the live view's handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 500 * time.Millisecond
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	h := &handler{opts: opts, log: opts.Logger, files: http.FileServerFS(sub), graphs: map[string]graphEntry{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/pipelines", h.pipelines)
	mux.HandleFunc("/api/workers", h.workers)
	mux.HandleFunc("/api/events", h.events)
	mux.HandleFunc("/api/logs", h.logs)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	mux.Handle("/", h.files)
	return h.guard(mux)
}

// guard admits a request: authenticated when the view has Authorize, from a loopback host name
// when it has not (a page of another site that rebinds its DNS name to 127.0.0.1 could read the
// view otherwise), and only GET or HEAD: the view changes nothing.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-Frame-Options", "DENY")
		hdr.Set("Referrer-Policy", "no-referrer")
		hdr.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		if h.opts.Authorize != nil {
			if !h.authorized(r) {
				hdr.Set("WWW-Authenticate", `Basic realm="`+Realm+`", charset="UTF-8"`)
				writeError(w, http.StatusUnauthorized, "the live view needs the broker's operator token (or an operator or read-only identity's): "+
					"HTTP basic authentication with the token as password, or an identity's name and secret, or the header Authorization: Bearer TOKEN")
				return
			}
		} else if !loopbackHost(r.Host) {
			writeError(w, http.StatusForbidden, fmt.Sprintf("host %q: the live view without --auth-token answers only to a loopback address", r.Host))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hdr.Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "the live view is read-only: GET or HEAD")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized checks the request's credentials with Authorize: a bearer token, or basic
// authentication whose password is a token (the operator's; any user name) or whose user name
// and password are an identity's name and secret (its credentials file's token is
// marvelo-id.NAME.SECRET).
func (h *handler) authorized(r *http.Request) bool {
	if auth := r.Header.Get("Authorization"); len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		tok := strings.TrimSpace(auth[7:])
		return tok != "" && h.opts.Authorize(tok)
	}
	user, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		return false
	}
	if h.opts.Authorize(pass) {
		return true
	}
	return user != "" && h.opts.Authorize(protocol.IdentityToken(user, pass))
}

// loopbackHost reports whether a Host header names this machine's loopback: localhost or a
// loopback address, with or without a port.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (h *handler) pipelines(w http.ResponseWriter, r *http.Request) {
	s, err := h.snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, PipelinesReply{Time: s.at, Pipelines: s.pipelines})
}

func (h *handler) workers(w http.ResponseWriter, r *http.Request) {
	s, err := h.snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, WorkersReply{Time: s.at, Workers: s.workers})
}

// events: ?pipeline=NAME (else every pipeline's), ?limit=N (default 100): the last N, oldest
// first.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("pipeline")
	limit, err := intParam(r, "limit", 100, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := h.snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	evs, ok := s.eventsOf(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no pipeline named %q", name))
		return
	}
	if len(evs) > limit {
		evs = evs[len(evs)-limit:]
	}
	writeJSON(w, EventsReply{Time: s.at, Pipeline: name, Events: evs})
}

// logs: ?pipeline=NAME (required), ?tail=N (default 100, at most MaxTail): the last N lines of
// the pipeline's current run, oldest first.
func (h *handler) logs(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("pipeline")
	if err := protocol.CheckName("pipeline", name); err != nil {
		writeError(w, http.StatusBadRequest, "logs: ?pipeline=NAME: "+err.Error())
		return
	}
	tail, err := intParam(r, "tail", 100, MaxTail)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := h.snapshot(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	p, ok := s.pipeline(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no pipeline named %q", name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	lines, err := h.opts.Source.Logs(ctx, name, p.Submitted, tail)
	if err != nil {
		h.fail(w, r, fmt.Errorf("logs of %s: %w", name, err))
		return
	}
	out := LogsReply{Time: time.Now(), Pipeline: name, Run: p.Run, Lines: make([]LogLine, 0, len(lines))}
	for _, l := range lines {
		out.Lines = append(out.Lines, LogLine{Time: l.Time, Job: l.Job, Name: l.Name, Worker: l.Worker, Level: l.Level, Text: l.Text})
	}
	writeJSON(w, out)
}

// fail answers 502: the broker could not be read.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	h.log.Warn("live view: cannot read the broker", "path", r.URL.Path, "error", err)
	writeError(w, http.StatusBadGateway, "cannot read the broker: "+err.Error())
}

func intParam(r *http.Request, name string, def, most int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("?%s=%q: want a positive number", name, v)
	}
	return min(n, most), nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // a client that went away: nothing to do
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorReply{Error: msg})
}

// Server is the live view listening on an address.
type Server struct {
	l    net.Listener
	srv  *http.Server
	done chan struct{}
	err  error // of Serve, read after done
}

// Serve starts serving the live view on opts.Addr. It refuses an address beyond loopback
// without Authorize. Close stops it.
func Serve(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("liveview: no source")
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("liveview: --ui %q: want host:port, e.g. 127.0.0.1:8080: %w", opts.Addr, err)
	}
	if opts.Authorize == nil && !loopbackHost(host) {
		return nil, fmt.Errorf("liveview: refusing to serve the live view on %s without --auth-token: "+
			"anyone on the network could read the pipelines and their logs (listen on 127.0.0.1, or give the broker --auth-token)", opts.Addr)
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("liveview: --ui %s: address already in use (another program listens there; pick another port)", opts.Addr)
		}
		return nil, fmt.Errorf("liveview: --ui %s: %w", opts.Addr, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{l: l, done: make(chan struct{}),
		srv: &http.Server{Handler: New(opts), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
			log.Error("live view stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the address the view is served on.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Close stops the server: it lets requests under way end for up to two seconds, then closes
// their connections, and waits for the serving goroutine.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.srv.Close())
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("liveview: close: %w", err)
	}
	return s.err
}
