package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/julienschmidt/httprouter"
	"net/http"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// specProblem turns a ParseSpec or ParseResume error into a problem.
func specProblem(err error) problem.Problem {
	var se *api.SpecError
	if errors.As(err, &se) {
		if se.NotFound {
			return problem.NotFound(se.Detail)
		}
		return problem.BadRequest("invalid stream request", problem.FieldError{Field: se.Field, Detail: se.Detail})
	}
	return problem.BadRequest(err.Error())
}

// openProblem turns a Streams.Open error into a problem.
func openProblem(err error) problem.Problem {
	switch {
	case errors.Is(err, upstream.ErrUnknownCluster):
		return problem.NotFound(err.Error())
	case errors.Is(err, upstream.ErrNotConfigured):
		// Not configured is not temporary: 501, as the function answers (503 says retry).
		return problem.New(http.StatusNotImplemented, err.Error())
	}
	return problem.FromError(err)
}

// lastEventID is the Last-Event-ID header, or the lastEventId query parameter some
// EventSource polyfills send instead.
func lastEventID(r *http.Request, fromQuery string) string {
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		return id
	}
	return fromQuery
}

// serveStream serves one stream on one connection.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, kind api.Kind, ps httprouter.Params) {
	path := r.URL.Path
	spec, err := api.NewSpec(kind, ps, r.URL.Query(), s.cfg.AppLabel)
	if err != nil {
		s.refuse(w, specProblem(err))
		return
	}
	resume, err := api.ParseResume(spec.Kind, lastEventID(r, spec.LastEventID))
	if err != nil {
		s.refuse(w, specProblem(err))
		return
	}
	rv, ok := s.reviewer(spec.Cluster)
	if !ok {
		s.refuse(w, problem.NotFound(fmt.Sprintf("unknown cluster %q", spec.Cluster)))
		return
	}
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	if _, err := rv.Check(r.Context(), token, spec.Actions()...); err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	if resume.Ended {
		// The browser saw the end and reconnected anyway: 204 stops EventSource.
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if s.shuttingDown() {
		s.refuse(w, problem.New(http.StatusServiceUnavailable, "the router is shutting down: reconnect"))
		return
	}
	topic, release, err := s.streams.Open(spec)
	if err != nil {
		s.refuse(w, openProblem(err))
		return
	}
	kindName := string(spec.Kind)
	c := hub.NewClient(s.cfg.QueueSize, s.metrics)
	sub := c.NewSubscription("")
	cw := s.startStream(w, r, c, &plainFramer{lastID: resume.ID})
	if cw == nil {
		release()
		return
	}
	s.streamsWG.Add(1)
	s.metrics.Clients.WithLabelValues(kindName).Inc()
	s.metrics.Subscriptions.WithLabelValues(kindName).Inc()
	g := newGrant(token)
	actions := spec.Actions()
	watch := s.rechecks.add(func(ctx context.Context) {
		if p, end := s.recheck(ctx, g, rv, actions...); end {
			cw.revoke(p)
		} else if s.outlived(g) {
			c.Close(hub.ReasonLifetime)
		}
	})
	cw.serve(r.Context(), func(ctx context.Context) {
		if err := topic.Subscribe(ctx, sub, upstream.Join{Spec: spec, Resume: resume}); err != nil && ctx.Err() == nil {
			s.log.Warn("subscribe failed", "stream", path, "err", err)
		}
	}, func() {
		s.rechecks.remove(watch)
		topic.Unsubscribe(sub)
		release()
		s.metrics.Subscriptions.WithLabelValues(kindName).Dec()
		s.metrics.Clients.WithLabelValues(kindName).Dec()
		s.streamsWG.Done()
	})
}
