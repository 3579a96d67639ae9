package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/session"
)

// The multiplexed stream carries several subscriptions on one EventSource, so that a
// portal page needs one connection however many panels it shows (browsers allow six per
// host over HTTP/1.1). Its events are named after the subscriptions; each event's data is
// the subscription's own (with its "type").
//
//	GET    /api/v1/stream/mux?subscribe=<name>:<stream path>&subscribe=…
//	POST   /api/v1/stream/mux/{session}/subscriptions   {"name": "...", "path": "..."}
//	DELETE /api/v1/stream/mux/{session}/subscriptions/{name}
//
// Its ids ("m1.…", see session.ID) carry every subscription's position, and the name and
// path of those added by POST: a browser reconnecting with its Last-Event-ID to any
// router (another replica, or one restarted) gets the URL's subscriptions and those the
// id carries, each resumed from its position, every one authorized as a new one (one
// the user may no longer have gets a final `error` 403 under its name). A session lives
// in the process serving its stream: POST and DELETE must reach that process (route
// them as the stream, e.g. sticky by session); elsewhere they are answered 404, and the
// portal adds the subscription again once its stream reconnected (its `session` event
// names the session and its subscriptions).
//
// Connection-level events: `session` (first: the session id and its subscriptions),
// `error` (the stream is closed, with the reason: 401 when the token is no longer
// accepted), `reconnect` (the router is stopping, or the connection reached its maximum
// lifetime). A subscription whose rights were revoked gets a last event under its name,
// of type `error` with status 403, and leaves the session; the others go on.

// EventSession is the first event of a multiplexed stream.
const EventSession = session.EventSession

// SubscriptionRequest is the body of POST …/subscriptions, and one subscription in a
// `session` event.
type SubscriptionRequest = session.Request

type sessionPayload = session.Payload

// sessions is the process's table of multiplexed sessions, made on first use (its
// hooks need the server).
type sessions struct {
	linger time.Duration
	mu     sync.Mutex
	t      *session.Table
}

func newSessions(linger time.Duration) *sessions { return &sessions{linger: linger} }

func (ss *sessions) closeAll() {
	ss.mu.Lock()
	t := ss.t
	ss.mu.Unlock()
	if t != nil {
		t.CloseAll()
	}
}

func (s *Server) table() *session.Table {
	ss := s.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.t == nil {
		ss.t = session.NewTable(ss.linger, s.cfg.MaxSubscriptions, session.Hooks{
			Attached: func(k api.Kind) { s.metrics.Subscriptions.WithLabelValues(string(k)).Inc() },
			Detached: func(k api.Kind) { s.metrics.Subscriptions.WithLabelValues(string(k)).Dec() },
			SubscribeFailed: func(name string, err error) {
				s.log.Warn("subscribe failed", "subscription", name, "err", err)
			},
		})
	}
	return ss.t
}

// muxFramer frames a multiplexed stream's deliveries.
type muxFramer struct{ f *session.Framer }

func (m muxFramer) frame(dst []byte, d hub.Delivery) ([]byte, int, bool) { return m.f.Frame(dst, d) }
func (m muxFramer) lastEventID() string                                  { return m.f.LastEventID() }

// forbiddenPayload is the final event of a subscription the user may no longer have.
func forbiddenPayload(fe *authz.ForbiddenError) api.ErrorPayload {
	return api.ErrorPayload{
		Type: api.EventError, Status: http.StatusForbidden, Code: api.CodeForbidden, Reason: "Forbidden",
		Message: "access to this stream was revoked: " + fe.Error(),
	}
}

// serveMux serves a multiplexed stream: a new session, or a resumed one.
func (s *Server) serveMux(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "subscribe" && k != "lastEventId" {
			s.refuse(w, problem.BadRequest("invalid stream request", problem.FieldError{Field: k, Detail: "unknown parameter: the multiplexed stream takes subscribe"}))
			return
		}
	}
	var last *session.ID
	if id := lastEventID(r, q.Get("lastEventId")); id != "" {
		var err error
		if last, err = session.ParseID(id); err != nil {
			s.refuse(w, specProblem(err))
			return
		}
	}
	wants, err := session.ParseWants(q["subscribe"], s.cfg.AppLabel, s.cfg.MaxSubscriptions)
	var tooMany *session.TooManyError
	if errors.As(err, &tooMany) {
		s.refuse(w, problem.BadRequest(tooMany.Error()))
		return
	} else if err != nil {
		s.refuse(w, specProblem(err))
		return
	}
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	defaultRV := s.reviewers[s.clusters.Default().Name]
	user, err := defaultRV.Authenticate(r.Context(), token)
	if err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	plan, err := s.table().Resolve(user, wants, last, s.cfg.AppLabel)
	if err != nil {
		s.refuse(w, specProblem(err))
		return
	}
	if plan.Subscriptions() > s.cfg.MaxSubscriptions {
		s.refuse(w, problem.BadRequest(fmt.Sprintf("at most %d subscriptions per stream", s.cfg.MaxSubscriptions)))
		return
	}
	// Every subscription to open is checked as a new one; one the id carries that the
	// user may no longer have ends alone, as it would have on the stream it was on.
	for i := 0; i < len(plan.Open); {
		sub := plan.Open[i]
		rv, ok := s.reviewer(sub.Spec.Cluster)
		if !ok {
			s.refuse(w, problem.NotFound(fmt.Sprintf("subscription %s: unknown cluster %q", sub.Req.Name, sub.Spec.Cluster)))
			return
		}
		if _, err := rv.Check(r.Context(), token, sub.Spec.Actions()...); err != nil {
			var fe *authz.ForbiddenError
			if sub.Carried && errors.As(err, &fe) {
				plan.Drop(i, api.Marshal(forbiddenPayload(fe)))
				continue
			}
			p := s.authProblem(err)
			p.Detail = "subscription " + sub.Req.Name + ": " + p.Detail
			s.refuse(w, p)
			return
		}
		i++
	}
	if s.shuttingDown() {
		s.refuse(w, problem.New(http.StatusServiceUnavailable, "the router is shutting down: reconnect"))
		return
	}

	c := hub.NewClient(s.cfg.QueueSize, s.metrics)
	// The connection's context ends when it does (attachments wait on it), not with the
	// request: a taken-over connection outlives its handler.
	conn, first, err := s.table().Start(context.WithoutCancel(r.Context()), plan, user, s.streams, c)
	var oe *session.OpenError
	switch {
	case errors.As(err, &oe):
		p := openProblem(oe.Err)
		p.Detail = "subscription " + oe.Name + ": " + p.Detail
		s.refuse(w, p)
		return
	case err != nil:
		s.refuse(w, problem.New(http.StatusServiceUnavailable, "the session was closed: reconnect"))
		return
	}
	sess := conn.Session()
	f := muxFramer{conn.Framer()}
	cw := s.startStream(w, r, c, f)
	if cw == nil || cw.write(first) != nil {
		sess.Detach(conn)
		return
	}
	s.streamsWG.Add(1)
	s.metrics.Clients.WithLabelValues("mux").Inc()
	cw.afterWrite = func() {
		for _, m := range f.f.TakeEnded() {
			sess.Remove(m, nil)
		}
	}
	// The connection's token is checked again, and with it every subscription's rights:
	// a revoked subscription ends alone, a rejected token ends the connection.
	g := newGrant(token)
	check := func(ctx context.Context) {
		if p, end := s.recheck(ctx, g, defaultRV); end {
			cw.revoke(p)
			return
		}
		if s.outlived(g) {
			c.Close(hub.ReasonLifetime)
			return
		}
		for _, m := range sess.Subs() {
			rv, ok := s.reviewer(m.Spec().Cluster)
			if !ok {
				continue
			}
			if p, end := s.recheck(ctx, g, rv, m.Spec().Actions()...); end {
				sess.Revoke(m, api.Marshal(p))
			}
		}
	}
	watch := s.rechecks.add(check)
	cw.serve(r.Context(), func(ctx context.Context) {
		conn.Subscribe()
		if plan.Live() {
			// Subscriptions added to the session earlier were not checked with this
			// request: check them now rather than a period later.
			check(ctx)
		}
	}, func() {
		s.rechecks.remove(watch)
		sess.Detach(conn)
		if c.Reason() == hub.ReasonRevoked {
			// Nobody may resume it here: the token it was opened with is no longer
			// accepted (another router checks the token of a reconnection anyway).
			sess.Close()
		}
		s.metrics.Clients.WithLabelValues("mux").Dec()
		s.streamsWG.Done()
	})
}

// sessionFor returns the caller's session, or answers the request: 404 for a session
// this process does not hold (or another user's).
func (s *Server) sessionFor(w http.ResponseWriter, r *http.Request, id string) (*session.Session, string, bool) {
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	user, err := s.reviewers[s.clusters.Default().Name].Authenticate(r.Context(), token)
	if err != nil {
		s.refuse(w, s.authProblem(err))
		return nil, "", false
	}
	sess := s.table().Get(id, user)
	if sess == nil {
		// Another user's session is as unknown as one that does not exist.
		s.refuse(w, problem.NotFound(fmt.Sprintf("no multiplexed session %q on this router: send it to the router serving the session's stream, or add the subscription again once the stream has reconnected", id)))
		return nil, "", false
	}
	return sess, token, true
}

// serveAddSubscription adds a subscription to a session.
func (s *Server) serveAddSubscription(w http.ResponseWriter, r *http.Request, id string) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		s.refuse(w, problem.New(http.StatusUnsupportedMediaType, "send the subscription as application/json"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err != nil {
		s.refuse(w, problem.BadRequest("could not read the body"))
		return
	}
	if len(body) > 64<<10 {
		s.refuse(w, problem.New(http.StatusRequestEntityTooLarge, "the body is limited to 64 KiB"))
		return
	}
	req, spec, err := session.ParseBody(body, s.cfg.AppLabel)
	if err != nil {
		s.refuse(w, specProblem(err))
		return
	}
	sess, token, ok := s.sessionFor(w, r, id)
	if !ok {
		return
	}
	rv, ok := s.reviewer(spec.Cluster)
	if !ok {
		s.refuse(w, problem.NotFound(fmt.Sprintf("unknown cluster %q", spec.Cluster)))
		return
	}
	if _, err := rv.Check(r.Context(), token, spec.Actions()...); err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	var oe *session.OpenError
	switch err := sess.Add(req, spec, s.streams); {
	case errors.As(err, &oe):
		s.refuse(w, openProblem(oe.Err))
		return
	case errors.Is(err, session.ErrClosed):
		s.refuse(w, problem.NotFound(fmt.Sprintf("no multiplexed session %q", id)))
		return
	case errors.Is(err, session.ErrExists):
		s.refuse(w, problem.Conflict(fmt.Sprintf("the session already has a subscription named %q", req.Name)))
		return
	case errors.Is(err, session.ErrFull):
		s.refuse(w, problem.Conflict(fmt.Sprintf("the session has the most subscriptions allowed (%d)", s.cfg.MaxSubscriptions)))
		return
	case err != nil:
		s.refuse(w, problem.Conflict(err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(api.Marshal(req))
}

// serveRemoveSubscription removes a subscription from a session.
func (s *Server) serveRemoveSubscription(w http.ResponseWriter, r *http.Request, id, name string) {
	sess, _, ok := s.sessionFor(w, r, id)
	if !ok {
		return
	}
	m := sess.Find(name)
	if m == nil {
		s.refuse(w, problem.NotFound(fmt.Sprintf("no subscription %q in the session", name)))
		return
	}
	sess.Remove(m, nil)
	w.WriteHeader(http.StatusNoContent)
}
