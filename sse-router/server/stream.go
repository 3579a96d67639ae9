package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
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
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, path string) {
	spec, err := api.ParseSpec(path, r.URL.Query(), s.cfg.AppLabel)
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
	defer release()

	s.streamsWG.Add(1)
	defer s.streamsWG.Done()
	kind := string(spec.Kind)
	s.metrics.Clients.WithLabelValues(kind).Inc()
	defer s.metrics.Clients.WithLabelValues(kind).Dec()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := hub.NewClient(s.cfg.QueueSize, s.metrics)
	sub := c.NewSubscription("")
	cw := s.startStream(w, r, c, &plainFramer{lastID: resume.ID})
	if cw == nil {
		return
	}

	g := newGrant(token)
	actions := spec.Actions()
	watch := s.rechecks.add(func(ctx context.Context) {
		if p, end := s.recheck(ctx, g, rv, actions...); end {
			cw.revoke(p)
		} else if s.outlived(g) {
			c.Close(hub.ReasonLifetime)
		}
	})
	defer s.rechecks.remove(watch)

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := topic.Subscribe(ctx, sub, upstream.Join{Spec: spec, Resume: resume}); err != nil && ctx.Err() == nil {
			s.log.Warn("subscribe failed", "stream", path, "err", err)
		}
	})
	s.metrics.Subscriptions.WithLabelValues(kind).Inc()
	cw.run(ctx)
	cancel()
	wg.Wait()
	topic.Unsubscribe(sub)
	s.metrics.Subscriptions.WithLabelValues(kind).Dec()
}

// framer encodes deliveries for one kind of client stream.
type framer interface {
	// frame appends d's wire form; done says the stream is over after it.
	frame(dst []byte, d hub.Delivery) (out []byte, events int, done bool)
	// lastEventID is the id the browser holds after what was framed so far.
	lastEventID() string
}

// plainFramer writes a topic's shared bytes as they are.
type plainFramer struct{ lastID string }

func (f *plainFramer) frame(dst []byte, d hub.Delivery) ([]byte, int, bool) {
	for _, ev := range d.Msg.Events {
		if ev.ID == "" {
			return f.frameEach(dst, d.Msg)
		}
	}
	f.lastID = d.Msg.LastID()
	return append(dst, d.Msg.Wire...), len(d.Msg.Events), d.Msg.End
}

// frameEach frames a message holding an event without a position of its own (an error
// before the topic had any data): it gets the client's current id, so that it does not
// make the browser forget where it stood.
func (f *plainFramer) frameEach(dst []byte, m *hub.Message) ([]byte, int, bool) {
	for _, ev := range m.Events {
		if ev.ID != "" {
			f.lastID = ev.ID
		}
		dst = sse.AppendEvent(dst, ev.Name, f.lastID, ev.Data)
	}
	return dst, len(m.Events), m.End
}

func (f *plainFramer) lastEventID() string { return f.lastID }

// clientWriter writes one client's stream: it drains the client's queue into as few
// writes as it can, each under a deadline, sends a heartbeat when idle, and says why when
// the router closes the stream.
type clientWriter struct {
	s   *Server
	w   http.ResponseWriter
	rc  *http.ResponseController
	c   *hub.Client
	f   framer
	buf []byte
	// afterWrite, when set, runs after each write of deliveries.
	afterWrite func()
	// revoked is the final error event's payload of a stream closed as revoked.
	revoked atomic.Pointer[api.ErrorPayload]
}

// revoke ends the stream with a final error event: the user's token or right is gone.
func (cw *clientWriter) revoke(p api.ErrorPayload) {
	cw.revoked.CompareAndSwap(nil, &p)
	cw.c.Close(hub.ReasonRevoked)
}

// startStream sends the headers and the retry advice at once, so that proxies and
// browsers see the stream open before the first event.
func (s *Server) startStream(w http.ResponseWriter, r *http.Request, c *hub.Client, f framer) *clientWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	w.WriteHeader(http.StatusOK)
	cw := &clientWriter{s: s, w: w, rc: http.NewResponseController(w), c: c, f: f, buf: make([]byte, 0, 16<<10)}
	if err := cw.write(sse.AppendRetry(nil, s.cfg.Retry)); err != nil {
		return nil
	}
	return cw
}

// write writes b and flushes it under the write deadline.
func (cw *clientWriter) write(b []byte) error {
	if err := cw.rc.SetWriteDeadline(time.Now().Add(cw.s.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := cw.w.Write(b); err != nil {
		return err
	}
	if err := cw.rc.Flush(); err != nil {
		return err
	}
	cw.s.metrics.BytesOut.Add(float64(len(b)))
	return nil
}

// maxCoalesce bounds the bytes gathered into one write.
const maxCoalesce = 256 << 10

// run writes until the stream ends, the client is closed or goes away, or ctx ends.
func (cw *clientWriter) run(ctx context.Context) {
	hb := time.NewTimer(cw.s.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case d := <-cw.c.Deliveries():
			buf, events, done := cw.f.frame(cw.buf[:0], d)
			for !done && len(buf) < maxCoalesce {
				select {
				case d := <-cw.c.Deliveries():
					var n int
					buf, n, done = cw.f.frame(buf, d)
					events += n
					continue
				default:
				}
				break
			}
			if err := cw.write(buf); err != nil {
				cw.writeFailed(err)
				return
			}
			cw.s.metrics.EventsOut.Add(float64(events))
			if cw.afterWrite != nil {
				cw.afterWrite()
			}
			if cap(buf) <= 4*maxCoalesce {
				cw.buf = buf
			}
			if done {
				cw.c.Close(hub.ReasonEnded)
				return
			}
			hb.Reset(cw.s.cfg.Heartbeat)
		case <-hb.C:
			if err := cw.write(sse.AppendComment(nil, "keep-alive")); err != nil {
				cw.writeFailed(err)
				return
			}
			hb.Reset(cw.s.cfg.Heartbeat)
		case <-cw.c.Done():
			cw.final(cw.c.Reason())
			return
		case <-cw.s.shutdown:
			cw.c.Close(hub.ReasonShutdown)
			cw.final(hub.ReasonShutdown)
			return
		case <-ctx.Done():
			return
		}
	}
}

// writeFailed closes the client after a failed write. A write that missed its deadline
// means the client stopped reading: it is dropped as slow (nothing more can be written
// to tell it why).
func (cw *clientWriter) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if cw.c.Reason() != hub.ReasonSlow { // not already counted by its full queue
			cw.s.metrics.SlowClientsDropped.Inc()
		}
		cw.c.Close(hub.ReasonSlow)
		cw.s.log.Info("dropped a client that stopped reading", "err", err)
		return
	}
	cw.c.Close("write failed")
}

// final tells the browser why the router closes its stream.
func (cw *clientWriter) final(reason string) {
	var b []byte
	id := cw.f.lastEventID()
	switch reason {
	case hub.ReasonSlow:
		b = sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, mustJSON(api.ErrorPayload{
			Type: api.EventError, Code: api.CodeSlowClient, Reason: hub.ReasonSlow, Retrying: false,
			Message: "this stream fell too far behind and was closed; reconnect to resume",
		})))
	case hub.ReasonShutdown:
		// A random delay spreads the reconnections of every client over a few seconds.
		retry := cw.s.cfg.Retry + rand.N(cw.s.cfg.Retry+1)
		b = sse.AppendRetry(nil, retry)
		b = sse.AppendEvent(b, EventReconnect, id, sse.AppendData(nil, mustJSON(reconnectPayload{
			Type: EventReconnect, Reason: hub.ReasonShutdown, Message: "the router is restarting: reconnect",
		})))
	case hub.ReasonRevoked:
		// Not retrying: a portal closes its EventSource on this event. One that does not
		// reconnects after retry: and is refused (401/403 before the stream starts), which
		// makes EventSource give up, where a closed stream alone would not.
		p := cw.revoked.Load()
		if p == nil {
			return
		}
		b = sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, mustJSON(p)))
	case hub.ReasonLifetime:
		// The stream is checked afresh when the client reconnects (EventSource does by
		// itself, resuming from its Last-Event-ID).
		b = sse.AppendEvent(nil, EventReconnect, id, sse.AppendData(nil, mustJSON(reconnectPayload{
			Type: EventReconnect, Reason: hub.ReasonLifetime, Message: "this stream reached its maximum lifetime: reconnect",
		})))
	case hub.ReasonReplaced:
		b = sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, mustJSON(api.ErrorPayload{
			Type: api.EventError, Code: api.CodeReplaced, Reason: hub.ReasonReplaced, Message: "a newer connection took over this session",
		})))
	default:
		return
	}
	_ = cw.write(b)
}

// EventReconnect tells a client to reconnect (the router is going away).
const EventReconnect = "reconnect"

type reconnectPayload struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}
