package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// errNotTakenOver: the connection stays with net/http (HTTP/2, a recorder in tests).
var errNotTakenOver = errors.New("connection not taken over")

// conns writes the streams whose HTTP/1.1 connections the router took over after the
// headers. No goroutine, buffer or reader is kept per stream: a stream with something
// to send is handed to one of a few writers, which frames everything it has queued
// into one buffer of its own and writes it with one non-blocking write. Only a stream
// whose socket is full gets a goroutine, which writes what is left under the deadline
// by which it must have been sent; past it, the client is dropped as slow. A watchdog
// sends heartbeats to idle streams and drops those whose sent data the client stopped
// taking.
type conns struct {
	s     *Server
	ready chan *clientWriter

	mu  sync.Mutex
	all map[*clientWriter]struct{}
}

func newConns(s *Server) *conns {
	return &conns{s: s, ready: make(chan *clientWriter, 1<<16), all: map[*clientWriter]struct{}{}}
}

// run serves until ctx ends: the writers and the watchdog.
func (p *conns) run(ctx context.Context, writers int) {
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() { p.write(ctx) })
	}
	wg.Go(func() { p.watch(ctx) })
	wg.Wait()
}

// takeOver sends the headers and first, then keeps the connection for the stream.
func (p *conns) takeOver(w http.ResponseWriter, first []byte) (*streamConn, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, errNotTakenOver
	}
	head := []byte("HTTP/1.1 200 OK\r\n")
	hb := headerBuffer{b: head}
	if err := w.Header().Write(&hb); err != nil {
		return nil, errNotTakenOver
	}
	// No length and no chunks: the body is the stream, until the connection closes.
	head = append(hb.b, "Connection: close\r\n\r\n"...)
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, errNotTakenOver
	}
	_ = brw // nothing more is read: what a client sends after its GET is ignored
	sc := newStreamConn(nc, p.s.cfg.SendBuffer)
	if err := sc.writeBlocking(append(head, first...), time.Now().Add(p.s.cfg.WriteTimeout)); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("stream headers: %w", err)
	}
	return sc, nil
}

type headerBuffer struct{ b []byte }

func (h *headerBuffer) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

// add hands cw to the writers.
func (p *conns) add(cw *clientWriter) {
	p.mu.Lock()
	p.all[cw] = struct{}{}
	p.mu.Unlock()
	cw.c.OnWake(func() { p.schedule(cw) })
	p.schedule(cw) // anything delivered before the wake was set
	if p.s.shuttingDown() {
		cw.c.Close(hub.ReasonShutdown) // closeAll may have run before the add
	}
}

func (p *conns) remove(cw *clientWriter) {
	p.mu.Lock()
	delete(p.all, cw)
	p.mu.Unlock()
}

// schedule gives cw to a writer. It never blocks its caller (a topic delivering under
// its lock): the queue holds far more than the streams open, and when it does not, a
// goroutine waits in its place.
func (p *conns) schedule(cw *clientWriter) {
	select {
	case p.ready <- cw:
	default:
		go func() { p.ready <- cw }()
	}
}

// closeAll closes every stream for reason.
func (p *conns) closeAll(reason string) {
	p.mu.Lock()
	all := make([]*clientWriter, 0, len(p.all))
	for cw := range p.all {
		all = append(all, cw)
	}
	p.mu.Unlock()
	for _, cw := range all {
		cw.c.Close(reason)
	}
}

func (p *conns) write(ctx context.Context) {
	var scratch []byte
	var queue []hub.Delivery
	var st writeStats
	for {
		select {
		case cw := <-p.ready:
			cw.flush(&scratch, &queue, &st)
			if cap(scratch) > 256<<10 {
				scratch = nil
			}
			// The counters are shared by every writer: add to them in bulk.
			if st.writes >= 256 || len(p.ready) == 0 {
				st.flush(p.s.metrics)
			}
		case <-ctx.Done():
			st.flush(p.s.metrics)
			return
		}
	}
}

// writeStats gathers a writer's counts between updates of the shared metrics.
type writeStats struct {
	writes, events, bytes int
}

func (st *writeStats) flush(m *hub.Metrics) {
	if st.writes == 0 {
		return
	}
	m.EventsOut.Add(float64(st.events))
	m.BytesOut.Add(float64(st.bytes))
	*st = writeStats{}
}

// flush writes what cw has queued, or closes it.
func (cw *clientWriter) flush(scratch *[]byte, queue *[]hub.Delivery, st *writeStats) {
	cw.mu.Lock()
	if cw.finished {
		cw.mu.Unlock()
		return
	}
	if cw.draining {
		if cw.c.Closed() {
			cw.conn.interrupt() // the draining goroutine ends the stream
		}
		cw.mu.Unlock()
		return
	}
	if cw.c.Closed() {
		cw.finishLocked(true)
		cw.mu.Unlock()
		cw.closed()
		return
	}
	buf, events, done, shared := cw.next((*scratch)[:0], queue)
	if cw.heartbeat && len(buf) == 0 {
		buf = append(buf, ": keep-alive\n\n"...)
	}
	cw.heartbeat = false
	if !shared {
		*scratch = buf[:0]
	}
	if len(buf) == 0 {
		cw.mu.Unlock()
		return
	}
	n, err := cw.conn.tryWrite(buf)
	if n > 0 {
		cw.lastWrite.Store(time.Now().UnixNano())
	}
	st.writes++
	st.events += events
	st.bytes += n
	if err != nil {
		cw.s.log.Debug("stream write failed", "err", err)
		cw.c.Close("write failed")
		cw.finishLocked(false)
		cw.mu.Unlock()
		cw.closed()
		return
	}
	if n < len(buf) {
		if shared {
			cw.pending = buf[n:] // the topic's bytes, never written to
		} else {
			cw.pending = append([]byte(nil), buf[n:]...)
		}
		cw.draining = true
		cw.mu.Unlock()
		go cw.drain(done)
		return
	}
	more := len(cw.carry) > 0
	cw.mu.Unlock()
	if cw.afterWrite != nil {
		cw.afterWrite()
	}
	if done {
		cw.c.Close(hub.ReasonEnded)
	} else if more {
		cw.s.conns.schedule(cw) // the rest of its backlog, after the others' turn
	}
}

// batchLimit bounds what one round frames into a writer's buffer: small messages are
// gathered up to it, so that many go out in one write, and what would pass it waits
// for the next round. A plain stream's large message goes out alone as the topic's own
// bytes, so that the backlog of a client lagging behind a large catch-up is never copied
// (2,000 such clients once held gigabytes of copies).
const batchLimit = 64 << 10

// next frames what is queued, after what the last round left (carry). A message a plain
// stream writes as it is comes back as the topic's own bytes (shared: not to be written
// to).
func (cw *clientWriter) next(dst []byte, queue *[]hub.Delivery) (out []byte, events int, done bool, shared bool) {
	ds := append((*queue)[:0], cw.carry...)
	clear(cw.carry)
	cw.carry = nil
	ds = cw.c.Take(ds)
	defer func() {
		clear(ds)
		*queue = ds[:0]
	}()
	pf, plain := cw.f.(*plainFramer)
	for i, d := range ds {
		large := len(d.Msg.Wire) > batchLimit
		if i > 0 && (large || len(dst)+len(d.Msg.Wire) > batchLimit) {
			cw.carry = append([]hub.Delivery(nil), ds[i:]...)
			return dst, events, false, false
		}
		if plain && i == 0 && (large || len(ds) == 1) && allHaveIDs(d.Msg) {
			pf.lastID = d.Msg.LastID()
			if !d.Msg.End && len(ds) > 1 {
				cw.carry = append([]hub.Delivery(nil), ds[1:]...)
			}
			return d.Msg.Wire, len(d.Msg.Events), d.Msg.End, true
		}
		var n int
		var end bool
		dst, n, end = cw.f.frame(dst, d)
		events += n
		if end {
			done = true
			break
		}
	}
	return dst, events, done, false
}

// drain writes what the socket did not take, then whatever was queued meanwhile, until
// the stream keeps up again. A client that takes nothing for the write timeout is
// dropped as slow; one that takes its data slowly is not.
func (cw *clientWriter) drain(endAfter bool) {
	var own []byte
	var queue []hub.Delivery
	for {
		cw.mu.Lock()
		b := cw.pending
		cw.mu.Unlock()
		err := cw.writeProgressing(b)
		cw.mu.Lock()
		if err != nil || cw.c.Closed() {
			if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && cw.c.Close(hub.ReasonSlow) {
				cw.s.log.Info("dropped a client that stopped reading", "unsent", len(b))
			}
			cw.c.Close("write failed")
			cw.pending, cw.draining = nil, false
			cw.finishLocked(false)
			cw.mu.Unlock()
			cw.closed()
			return
		}
		if endAfter {
			cw.pending, cw.draining = nil, false
			cw.mu.Unlock()
			cw.c.Close(hub.ReasonEnded)
			return
		}
		// pending is written: its buffer, when ours, can be framed into again.
		buf, events, done, shared := cw.next(own[:0], &queue)
		if !shared {
			own = buf
		}
		cw.s.metrics.EventsOut.Add(float64(events))
		if len(buf) == 0 && len(cw.carry) == 0 {
			cw.pending, cw.draining = nil, false
			cw.mu.Unlock()
			if cw.afterWrite != nil {
				cw.afterWrite()
			}
			return
		}
		cw.pending, endAfter = buf, done
		cw.mu.Unlock()
		if cw.afterWrite != nil {
			cw.afterWrite()
		}
	}
}

// writeProgressing writes all of b, as long as the client takes some of it within each
// write timeout.
func (cw *clientWriter) writeProgressing(b []byte) error {
	for len(b) > 0 {
		if cw.c.Closed() {
			return errors.New("closed")
		}
		if err := cw.conn.nc.SetWriteDeadline(time.Now().Add(cw.s.cfg.WriteTimeout)); err != nil {
			return err
		}
		n, err := cw.conn.nc.Write(b)
		if n > 0 {
			cw.s.metrics.BytesOut.Add(float64(n))
			cw.lastWrite.Store(time.Now().UnixNano())
		}
		b = b[n:]
		if err != nil && !(n > 0 && errors.Is(err, os.ErrDeadlineExceeded)) {
			return err
		}
	}
	return cw.conn.nc.SetWriteDeadline(time.Time{})
}

// finishLocked closes the connection, after the final frame when asked and possible.
func (cw *clientWriter) finishLocked(final bool) {
	if cw.finished {
		return
	}
	cw.finished = true
	cw.s.log.Debug("stream closed", "reason", cw.c.Reason())
	if final {
		if b := cw.finalFrame(cw.c.Reason()); b != nil {
			_, _ = cw.conn.tryWrite(b)
		}
	}
	_ = cw.conn.nc.Close()
	cw.s.conns.remove(cw)
}

// closed runs the stream's cleanup, once, outside its lock.
func (cw *clientWriter) closed() {
	if f := cw.onClose; f != nil {
		cw.onClose = nil
		f()
	}
}

// watch sends heartbeats to streams idle for a heartbeat interval and drops streams
// whose client stopped taking what was sent.
func (p *conns) watch(ctx context.Context) {
	// A quarter of the heartbeat at most, so that a heartbeat goes out within a tick of
	// its time.
	period := min(time.Second, p.s.cfg.Heartbeat/4)
	tick := time.NewTicker(period)
	defer tick.Stop()
	var all []*clientWriter
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.mu.Lock()
			all = all[:0]
			for cw := range p.all {
				all = append(all, cw)
			}
			p.mu.Unlock()
			for _, cw := range all {
				p.check(cw, now, period)
			}
			clear(all)
		}
	}
}

func (p *conns) check(cw *clientWriter, now time.Time, period time.Duration) {
	timeout := p.s.cfg.WriteTimeout
	// Looking for a closed peer costs a system call per stream: each stream is looked at
	// every few ticks (spread over them), which frees a gone client's stream within half
	// a heartbeat interval; a write to it fails sooner anyway.
	cw.conn.ticks++
	every := max(1, uint32(p.s.cfg.Heartbeat/period/2))
	if cw.conn.ticks%every == 0 && cw.conn.peerClosed() {
		cw.c.Close("disconnected")
		return
	}
	last := time.Unix(0, cw.lastWrite.Load())
	if stuck := cw.conn.stuckSince(now, last); !stuck.IsZero() && now.Sub(stuck) >= timeout {
		if cw.c.Close(hub.ReasonSlow) {
			p.s.log.Info("dropped a client that stopped reading", "stuck", now.Sub(stuck).String())
		}
		return
	}
	if now.Sub(last) >= p.s.cfg.Heartbeat-period/2 {
		cw.mu.Lock()
		cw.heartbeat = true
		cw.mu.Unlock()
		p.schedule(cw)
	}
}
