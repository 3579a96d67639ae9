package server

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

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
	if !allHaveIDs(d.Msg) {
		return f.frameEach(dst, d.Msg)
	}
	f.lastID = d.Msg.LastID()
	return append(dst, d.Msg.Wire...), len(d.Msg.Events), d.Msg.End
}

func allHaveIDs(m *hub.Message) bool {
	for _, ev := range m.Events {
		if ev.ID == "" {
			return false
		}
	}
	return true
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

// clientWriter writes one client's stream. It drains everything queued into one write,
// sends a heartbeat when the stream is idle, and says why when the router closes the
// stream.
//
// A stream on a connection the router could take over (HTTP/1.1) is written by the
// server's connection writers, without a goroutine of its own (see conns); any other
// (HTTP/2) is written by its handler's goroutine through the ResponseWriter (run).
type clientWriter struct {
	s *Server
	c *hub.Client
	f framer

	// afterWrite, when set, runs after each write of deliveries (outside mu).
	afterWrite func()
	// revoked is the final error event's payload of a stream closed as revoked.
	revoked atomic.Pointer[api.ErrorPayload]

	// Written through the ResponseWriter (HTTP/2, tests).
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte

	// Written by the connection writers.
	mu        sync.Mutex
	conn      *streamConn
	pending   []byte         // framed but unsent: the connection is draining it aside
	carry     []hub.Delivery // taken but left for the next round (see batchLimit)
	draining  bool           // a goroutine is writing pending with a deadline
	finished  bool
	heartbeat bool // a heartbeat is due
	lastWrite atomic.Int64
	onClose   func()
}

// revoke ends the stream with a final error event: the user's token or right is gone.
func (cw *clientWriter) revoke(p api.ErrorPayload) {
	cw.revoked.CompareAndSwap(nil, &p)
	cw.c.Close(hub.ReasonRevoked)
}

// startStream sends the headers and the retry advice at once, so that proxies and
// browsers see the stream open before the first event. It takes an HTTP/1.1 connection
// over; it returns nil when the client is already gone.
func (s *Server) startStream(w http.ResponseWriter, r *http.Request, c *hub.Client, f framer) *clientWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	cw := &clientWriter{s: s, c: c, f: f}
	cw.lastWrite.Store(time.Now().UnixNano())
	if r.ProtoMajor == 1 && !s.cfg.noHijack {
		conn, err := s.conns.takeOver(w, sse.AppendRetry(nil, s.cfg.Retry))
		switch {
		case err == nil:
			cw.conn = conn
			return cw
		case !errors.Is(err, errNotTakenOver):
			return nil
		}
	}
	if r.ProtoMajor == 1 {
		h.Set("Connection", "keep-alive")
	}
	w.WriteHeader(http.StatusOK)
	cw.w, cw.rc = w, http.NewResponseController(w)
	if err := cw.write(sse.AppendRetry(nil, s.cfg.Retry)); err != nil {
		return nil
	}
	return cw
}

// serve writes the stream until it ends. subscribe attaches the stream to its topics
// (it may wait for their first data); cleanup runs once the stream is over. A stream on
// a taken-over connection returns at once: the connection writers carry it on.
func (cw *clientWriter) serve(ctx context.Context, subscribe func(context.Context), cleanup func()) {
	if cw.conn == nil {
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { subscribe(ctx) })
		cw.run(ctx)
		cancel()
		wg.Wait()
		cleanup()
		return
	}
	// The request's context ends when the handler returns: the stream gets its own.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	subscribed := make(chan struct{})
	cw.onClose = func() {
		cancel()
		go func() {
			<-subscribed
			cleanup()
		}()
	}
	cw.s.conns.add(cw)
	subscribe(sctx)
	close(subscribed)
}

// write writes b and flushes it under the write deadline (ResponseWriter streams).
func (cw *clientWriter) write(b []byte) error {
	if cw.conn != nil {
		return cw.conn.writeBlocking(b, time.Now().Add(cw.s.cfg.WriteTimeout))
	}
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

// run writes a ResponseWriter stream until it ends, the client is closed or goes away,
// or ctx ends.
func (cw *clientWriter) run(ctx context.Context) {
	hb := time.NewTimer(cw.s.cfg.Heartbeat)
	defer hb.Stop()
	var queue []hub.Delivery
	for {
		select {
		case <-cw.c.Signal():
			if cw.c.Closed() {
				cw.final(cw.c.Reason())
				return
			}
			for first := true; first || len(cw.carry) > 0; first = false {
				buf, events, done, shared := cw.next(cw.buf[:0], &queue)
				if len(buf) > 0 {
					if err := cw.write(buf); err != nil {
						cw.writeFailed(err)
						return
					}
				}
				cw.s.metrics.EventsOut.Add(float64(events))
				if cw.afterWrite != nil {
					cw.afterWrite()
				}
				if !shared && cap(buf) <= 2*batchLimit {
					cw.buf = buf[:0]
				} else if !shared {
					cw.buf = nil // shrink back after a large join
				}
				if done {
					cw.c.Close(hub.ReasonEnded)
					return
				}
			}
			hb.Reset(cw.s.cfg.Heartbeat)
		case <-hb.C:
			if err := cw.write(sse.AppendComment(nil, "keep-alive")); err != nil {
				cw.writeFailed(err)
				return
			}
			hb.Reset(cw.s.cfg.Heartbeat)
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
		if cw.c.Close(hub.ReasonSlow) {
			cw.s.log.Info("dropped a client that stopped reading", "err", err)
		}
		return
	}
	cw.c.Close("write failed")
}

// finalFrame is what tells the browser why the router closes its stream (nil: nothing).
func (cw *clientWriter) finalFrame(reason string) []byte {
	id := cw.f.lastEventID()
	switch reason {
	case hub.ReasonSlow:
		return sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, api.Marshal(api.ErrorPayload{
			Type: api.EventError, Code: api.CodeSlowClient, Reason: hub.ReasonSlow, Retrying: false,
			Message: "this stream fell too far behind and was closed; reconnect to resume",
		})))
	case hub.ReasonShutdown:
		// A random delay spreads the reconnections of every client over a few seconds.
		retry := cw.s.cfg.Retry + rand.N(cw.s.cfg.Retry+1)
		b := sse.AppendRetry(nil, retry)
		return sse.AppendEvent(b, EventReconnect, id, sse.AppendData(nil, api.Marshal(reconnectPayload{
			Type: EventReconnect, Reason: hub.ReasonShutdown, Message: "the router is restarting: reconnect",
		})))
	case hub.ReasonRevoked:
		// Not retrying: a portal closes its EventSource on this event. One that does not
		// reconnects after retry: and is refused (401/403 before the stream starts), which
		// makes EventSource give up, where a closed stream alone would not.
		p := cw.revoked.Load()
		if p == nil {
			return nil
		}
		return sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, api.Marshal(p)))
	case hub.ReasonLifetime:
		// The stream is checked afresh when the client reconnects (EventSource does by
		// itself, resuming from its Last-Event-ID).
		return sse.AppendEvent(nil, EventReconnect, id, sse.AppendData(nil, api.Marshal(reconnectPayload{
			Type: EventReconnect, Reason: hub.ReasonLifetime, Message: "this stream reached its maximum lifetime: reconnect",
		})))
	case hub.ReasonReplaced:
		return sse.AppendEvent(nil, api.EventError, id, sse.AppendData(nil, api.Marshal(api.ErrorPayload{
			Type: api.EventError, Code: api.CodeReplaced, Reason: hub.ReasonReplaced, Message: "a newer connection took over this session",
		})))
	}
	return nil
}

// final tells the browser why the router closes its stream.
func (cw *clientWriter) final(reason string) {
	if b := cw.finalFrame(reason); b != nil {
		_ = cw.write(b)
	}
}

// EventReconnect tells a client to reconnect (the router is going away).
const EventReconnect = "reconnect"

type reconnectPayload struct {
	Type    string `json:"type"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}
