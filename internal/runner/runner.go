// Package runner serves a Knative function in the instanced form (a value with
// Handle(w, r) and optional Start, Stop, Ready and Alive) the way knative.dev/func-go's
// HTTP runtime does, so the function behaves the same under `make run` as in its
// Knative image: the same listen address, health endpoints, configuration, timeouts
// and shutdown sequence.
package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Handler is the one method every function has.
type Handler interface {
	Handle(w http.ResponseWriter, r *http.Request)
}

// Starter is implemented by functions that set themselves up from configuration.
type Starter interface {
	Start(ctx context.Context, cfg map[string]string) error
}

// Stopper is implemented by functions that release resources on shutdown.
type Stopper interface {
	Stop(ctx context.Context) error
}

// ReadinessReporter is implemented by functions that tell when they can take requests.
type ReadinessReporter interface {
	Ready(ctx context.Context) (bool, error)
}

// LivenessReporter is implemented by functions that tell whether they still work.
type LivenessReporter interface {
	Alive(ctx context.Context) (bool, error)
}

const (
	// DefaultListenAddress is where a function listens in its container.
	DefaultListenAddress = "[::]:8080"
	// ReadinessPath and LivenessPath are the health endpoints func.yaml names.
	ReadinessPath = "/health/readiness"
	LivenessPath  = "/health/liveness"

	// ShutdownTimeout bounds the wait for in-flight requests, StopTimeout the function's Stop.
	ShutdownTimeout = 30 * time.Second
	StopTimeout     = 30 * time.Second
)

// ListenAddress is the address to listen on: LISTEN_ADDRESS, else the legacy ADDRESS,
// else [::]:PORT, else DefaultListenAddress.
func ListenAddress(getenv func(string) string) string {
	if a := getenv("LISTEN_ADDRESS"); a != "" {
		return a
	}
	if a := getenv("ADDRESS"); a != "" {
		return a
	}
	if p := getenv("PORT"); p != "" {
		return net.JoinHostPort("::", p)
	}
	return DefaultListenAddress
}

// Config is the configuration handed to Start: the KEY=VALUE lines of the file cfg in dir
// (absent is fine; blank lines and # comments are skipped), overridden by the environment,
// since the environment is what a deployment sets last.
func Config(dir string, environ []string) (map[string]string, error) {
	cfg := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "cfg"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read cfg: %w", err)
	default:
		defer f.Close()
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("cfg line %d: want KEY=VALUE, got %q", n, line)
			}
			cfg[k] = strings.TrimSpace(v)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read cfg: %w", err)
		}
	}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			cfg[k] = v
		}
	}
	return cfg, nil
}

// Run serves f on ListenAddress with the configuration of the working directory and the
// environment until SIGINT or SIGTERM, then shuts down gracefully and stops f.
func Run(f Handler) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	cfg, err := Config(".", os.Environ())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ListenAddress(os.Getenv))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	slog.Info("function listening", "address", ln.Addr().String())
	return New(f).Serve(ctx, ln, cfg)
}

// Service serves one function instance.
type Service struct {
	f       Handler
	started atomic.Bool
	server  *http.Server
}

// New returns a Service for f with func-go's server timeouts.
func New(f Handler) *Service {
	s := &Service{f: f}
	mux := http.NewServeMux()
	mux.HandleFunc(ReadinessPath, s.ready)
	mux.HandleFunc(LivenessPath, s.alive)
	mux.HandleFunc("/", s.handle)
	s.server = &http.Server{
		Handler:           mux,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		ReadHeaderTimeout: 2 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	return s
}

// Server is the underlying HTTP server, for inspection.
func (s *Service) Server() *http.Server { return s.server }

// Serve serves on ln and starts the function beside it, so that health probes are
// answered (503 until the function has started and is ready) from the first moment.
// When ctx ends it stops accepting, waits for in-flight requests (ShutdownTimeout),
// then stops the function (StopTimeout). It returns the first error of serving,
// starting or stopping; a clean shutdown returns nil.
func (s *Service) Serve(ctx context.Context, ln net.Listener, cfg map[string]string) error {
	// The function's context outlives ctx (a signal) until Stop has returned, so that
	// what Start began can finish the requests still in flight.
	fctx, fcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer fcancel()

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.server.Serve(ln) }()

	startErr := make(chan error, 1)
	go func() {
		if st, ok := s.f.(Starter); ok {
			if err := st.Start(fctx, cfg); err != nil {
				startErr <- fmt.Errorf("start function: %w", err)
				return
			}
		}
		s.started.Store(true)
	}()

	var runErr error
	select {
	case <-ctx.Done():
		slog.Info("function shutting down")
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	case err := <-startErr:
		runErr = err
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := s.server.Shutdown(sctx); err != nil {
		runErr = errors.Join(runErr, fmt.Errorf("shutdown: %w", err))
	}
	if sp, ok := s.f.(Stopper); ok {
		stctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), StopTimeout)
		defer cancel()
		if err := sp.Stop(stctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("stop function: %w", err))
		}
	}
	return runErr
}

func (s *Service) handle(w http.ResponseWriter, r *http.Request) {
	if !s.started.Load() {
		p := problem.New(http.StatusServiceUnavailable, "the function is starting")
		p.RetryAfter = 1
		problem.Write(w, p)
		return
	}
	s.f.Handle(w, r)
}

func (s *Service) ready(w http.ResponseWriter, r *http.Request) {
	if !s.started.Load() {
		http.Error(w, "function not yet started", http.StatusServiceUnavailable)
		return
	}
	if rr, ok := s.f.(ReadinessReporter); ok {
		ready, err := rr.Ready(r.Context())
		if err != nil {
			http.Error(w, "readiness check failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !ready {
			http.Error(w, "function not yet ready", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("READY"))
}

func (s *Service) alive(w http.ResponseWriter, r *http.Request) {
	if lr, ok := s.f.(LivenessReporter); ok {
		alive, err := lr.Alive(r.Context())
		if err != nil {
			http.Error(w, "liveness check failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !alive {
			http.Error(w, "function not alive", http.StatusServiceUnavailable)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ALIVE"))
}
