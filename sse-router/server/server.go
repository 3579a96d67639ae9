// Package server is the SSE router's HTTP side: the stream endpoints under
// /api/v1/stream/ (one stream per request, or several on one multiplexed stream),
// authentication and authorization of every stream, SSE framing with heartbeats and
// write deadlines, CORS, the archived-log proxy, health, metrics and graceful shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dwp-sre/dwp-sre/internal/apidocs"
	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/cors"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/console"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// Deps are what the server is built from besides its configuration.
type Deps struct {
	Clusters *kube.Clusters
	// Apps serves app summaries (nil: the apps stream answers 501).
	Apps   upstream.AppsSource
	Logger *slog.Logger
	// Registry receives the router's metrics; nil makes a fresh one.
	Registry *prometheus.Registry
}

// Server serves the router's HTTP API.
type Server struct {
	cfg       Config
	clusters  *kube.Clusters
	streams   *upstream.Streams
	reviewers map[string]*authz.Reviewer
	metrics   *hub.Metrics
	registry  *prometheus.Registry
	log       *slog.Logger
	sessions  *sessions
	rechecks  *rechecker
	archive   *archiveProxy
	conns     *conns
	handler   http.Handler
	router    *routeRecorder
	openapi   []byte

	cancelTopics context.CancelFunc
	shutdown     chan struct{}
	shutdownOnce sync.Once
	streamsWG    sync.WaitGroup

	readyMu    sync.Mutex
	readyAt    time.Time
	readyError error
}

// New builds a server; its topics run until Close.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Clusters == nil {
		return nil, errors.New("no clusters")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// A Config made by hand (tests, embedding) gets the settings' defaults where it is zero.
	def := DefaultConfig()
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = def.Heartbeat
	}
	if cfg.Retry <= 0 {
		cfg.Retry = def.Retry
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = def.QueueSize
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = def.WriteTimeout
	}
	if cfg.MaxSubscriptions <= 0 {
		cfg.MaxSubscriptions = def.MaxSubscriptions
	}
	if cfg.AppLabel == "" {
		cfg.AppLabel = def.AppLabel
	}
	if cfg.TokenCookie == "" {
		cfg.TokenCookie = def.TokenCookie
	}
	if cfg.SessionMaxAge <= 0 {
		cfg.SessionMaxAge = def.SessionMaxAge
	}
	doc, err := api.OpenAPI()
	if err != nil {
		return nil, err
	}
	if cfg.ReauthorizeInterval <= 0 {
		cfg.ReauthorizeInterval = def.ReauthorizeInterval
	}
	// Rights are checked again with cached answers up to AuthCacheTTL old: the wheel turns
	// that much faster, so that a revoked right ends a stream within ReauthorizeInterval.
	ttl := cfg.AuthCacheTTL
	if ttl <= 0 {
		ttl = def.AuthCacheTTL
	}
	period := cfg.ReauthorizeInterval - ttl
	if period < 100*time.Millisecond {
		return nil, fmt.Errorf("the reauthorize interval (%s) must exceed the auth cache TTL (%s) by 100ms or more", cfg.ReauthorizeInterval, cfg.AuthCacheTTL)
	}
	m := hub.NewMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		clusters: deps.Clusters,
		streams: upstream.New(ctx, deps.Clusters, upstream.Config{
			Linger: cfg.Linger, WatchReplay: cfg.WatchReplay, LogReplay: cfg.LogReplay,
			WorkflowLogReplay: cfg.WorkflowLogReplay, MetricsInterval: cfg.MetricsInterval,
			Apps: deps.Apps, ArgoCDNamespace: cfg.ArgoCDNamespace, PrometheusURL: cfg.PrometheusURL,
			Metrics: m, Logger: deps.Logger,
		}),
		reviewers:    map[string]*authz.Reviewer{},
		metrics:      m,
		registry:     reg,
		log:          deps.Logger,
		openapi:      doc,
		cancelTopics: cancel,
		shutdown:     make(chan struct{}),
	}
	s.sessions = newSessions(cfg.Linger)
	s.rechecks = newRechecker(period)
	go s.rechecks.run(ctx)
	s.conns = newConns(s)
	writers := cfg.Writers
	if writers <= 0 {
		writers = 2 * runtime.GOMAXPROCS(0)
	}
	go s.conns.run(ctx, writers)
	for _, name := range deps.Clusters.Names() {
		cl, _ := deps.Clusters.Get(name)
		opts := authz.Options{
			TTL: cfg.AuthCacheTTL, DenyTTL: min(cfg.AuthCacheTTL, 5*time.Second),
			QPS: float32(cfg.ReviewQPS), Burst: cfg.ReviewBurst, MaxWait: cfg.ReviewMaxWait, MaxInFlight: cfg.ReviewMaxInFlight,
		}
		if cl.Config == nil { // fake clients (tests)
			s.reviewers[name] = authz.NewReviewer(cl.Kubernetes, opts)
			continue
		}
		rv, err := authz.NewReviewerForConfig(cl.Config, opts)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		s.reviewers[name] = rv
	}
	if cfg.ArgoServerURL != "" {
		a, err := newArchiveProxy(cfg.ArgoServerURL, cfg.ArgoServerCAFile, cfg.ArgoServerInsecure, s.log)
		if err != nil {
			cancel()
			return nil, err
		}
		s.archive = a
	}
	s.handler = s.routes()
	return s, nil
}

// DocsPath is where the interactive reference of the router's OpenAPI document is served.
const DocsPath = "/docs"

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	r := &routeRecorder{Router: httprouter.New()}
	s.router = r
	r.RedirectFixedPath = false
	r.NotFound = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasPrefix(req.URL.Path, api.Prefix+"/") {
			s.refuse(w, problem.NotFound(fmt.Sprintf("no stream at %q", req.URL.Path)))
			return
		}
		problem.Write(w, problem.NotFound(fmt.Sprintf("nothing at %s", req.URL.Path)))
	})
	r.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := w.Header().Get("Allow") // set by the router
		problem.Write(w, problem.Newf(http.StatusMethodNotAllowed, "%s is not allowed here; use %s", req.Method, strings.ReplaceAll(allow, ", ", " or ")))
	})
	r.GET("/healthz", func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	r.GET("/readyz", func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) { s.serveReady(w, req) })
	r.Handler(http.MethodGet, "/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	r.GET(api.OpenAPIPath, func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(s.openapi)
	})
	// The interactive reference needs no token; "Try it out" sends the user's.
	docs := apidocs.Handler(api.OpenAPIPath)
	r.Handler(http.MethodGet, DocsPath, docs)
	r.Handler(http.MethodGet, DocsPath+"/*asset", docs)
	// The console is a page like a portal's: it signs in with POST /api/v1/session and
	// opens streams with the cookie, so it needs no token to be served.
	con := console.Handler(console.Options{API: s.cfg.ConsoleAPI, Streams: api.Prefix})
	r.Handler(http.MethodGet, console.Path, con)
	r.Handler(http.MethodGet, console.Path+"/*file", con)
	r.GET("/", func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) {
		http.Redirect(w, req, console.Path+"/", http.StatusFound)
	})
	r.POST(SessionPath, func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) { s.serveSetCookie(w, req) })
	r.DELETE(SessionPath, func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) { s.serveClearCookie(w, req) })
	api.Register(r, api.Prefix, func(k api.Kind) httprouter.Handle {
		return func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) { s.serveStream(w, req, k, ps) }
	})
	r.GET(api.Prefix+"/mux", func(w http.ResponseWriter, req *http.Request, _ httprouter.Params) { s.serveMux(w, req) })
	r.POST(api.Prefix+"/mux/:session/subscriptions", func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		s.serveAddSubscription(w, req, ps.ByName("session"))
	})
	r.DELETE(api.Prefix+"/mux/:session/subscriptions/:name", func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		s.serveRemoveSubscription(w, req, ps.ByName("session"), ps.ByName("name"))
	})
	r.GET(api.Prefix+"/namespaces/:namespace/archived-workflows/:uid/nodes/:node/log", func(w http.ResponseWriter, req *http.Request, ps httprouter.Params) {
		s.serveArchivedLog(w, req, ps.ByName("namespace"), ps.ByName("uid"), ps.ByName("node"))
	})
	// A page of a foreign origin is refused before anything is opened on the user's cookie.
	return cors.Policy{
		Origins: s.cfg.CORSOrigins, Credentials: true, Setting: "DWP_CORS_ORIGINS",
		Methods: []string{"GET", "POST", "DELETE", "OPTIONS"},
		Headers: []string{"Authorization", "Content-Type", "Last-Event-ID", "Cache-Control"},
		Refuse:  s.refuse,
	}.Handler(r)
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.shutdown:
		problem.Write(w, problem.New(http.StatusServiceUnavailable, "shutting down"))
		return
	default:
	}
	if err := s.checkReady(r.Context()); err != nil {
		problem.Write(w, problem.Newf(http.StatusServiceUnavailable, "default cluster unreachable: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// checkReady asks the default cluster's API server for its version, at most every 5 s.
func (s *Server) checkReady(ctx context.Context) error {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if time.Since(s.readyAt) < 5*time.Second {
		return s.readyError
	}
	// ServerVersion takes no context: bound it by running it aside.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := s.clusters.Default().Kubernetes.Discovery().ServerVersion()
		errc <- err
	}()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.readyAt, s.readyError = time.Now(), err
	return err
}

// refuse answers a stream request with a problem before the stream starts.
func (s *Server) refuse(w http.ResponseWriter, p problem.Problem) {
	s.metrics.Refusals.WithLabelValues(fmt.Sprint(p.Status)).Inc()
	problem.Write(w, p)
}

// authProblem is the answer to a failed authentication or authorization. An API server
// that cannot be asked is logged with the detail: the browser gets a stable message, not
// the router's internal addresses.
func (s *Server) authProblem(err error) problem.Problem {
	var fe *authz.ForbiddenError
	switch {
	case errors.Is(err, authz.ErrNoToken):
		return problem.Unauthorized(fmt.Sprintf("no bearer token: send the Authorization header or the %s cookie", s.cfg.TokenCookie))
	case errors.Is(err, authz.ErrUnauthenticated):
		return problem.Unauthorized("the bearer token was not accepted")
	case errors.As(err, &fe):
		return problem.Forbidden(fe.Error())
	}
	if errors.Is(err, authz.ErrBusy) {
		s.log.Warn("access check deferred: too many reviews at once", "err", err)
		p := problem.New(http.StatusServiceUnavailable, "too many sign-ins at once; try again shortly")
		p.RetryAfter = 2
		return p
	}
	s.log.Warn("access check failed", "err", err)
	p := problem.New(http.StatusServiceUnavailable, "could not check access with the Kubernetes API server; try again")
	p.RetryAfter = 2
	return p
}

func (s *Server) reviewer(cluster string) (*authz.Reviewer, bool) {
	cl, ok := s.clusters.Get(cluster)
	if !ok {
		return nil, false
	}
	return s.reviewers[cl.Name], true
}

func (s *Server) shuttingDown() bool {
	select {
	case <-s.shutdown:
		return true
	default:
		return false
	}
}

// Shutdown tells every client to reconnect (elsewhere), closes the streams and stops the
// topics. Streams still open when ctx ends are cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
	s.conns.closeAll(hub.ReasonShutdown)
	done := make(chan struct{})
	go func() { s.streamsWG.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.sessions.closeAll()
	s.cancelTopics()
	s.streams.Wait()
	return err
}

// Run serves cfg.ListenAddress until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	s, err := New(cfg, deps)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if cfg.DebugAddress != "" {
		dctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if err := serveDebug(dctx, cfg.DebugAddress); err != nil {
				s.log.Error("debug listener stopped", "err", err)
			}
		}()
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.Info("serving", "address", ln.Addr().String(), "clusters", s.clusters.Names(), "default", s.clusters.Default().Name)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.cancelTopics()
		return err
	case <-ctx.Done():
	}
	timeout := s.cfg.ShutdownTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.log.Info("shutting down: telling clients to reconnect")
	err := s.Shutdown(sctx)
	if herr := hs.Shutdown(sctx); herr != nil && err == nil {
		err = herr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		_ = hs.Close()
	}
	return err
}
