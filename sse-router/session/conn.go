package session

import (
	"context"
	"sync"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// Conn is a session's connection.
type Conn struct {
	s      *Session
	client *hub.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	framer *Framer

	// Under the session's lock.
	started bool
	pending []attachment
}

type attachment struct {
	m    *Sub
	hsub *hub.Subscription
	join upstream.Join
}

func newConn(ctx context.Context, s *Session, c *hub.Client) *Conn {
	ctx, cancel := context.WithCancel(ctx)
	return &Conn{s: s, client: c, ctx: ctx, cancel: cancel, framer: &Framer{s: s}}
}

// Session is the connection's session.
func (c *Conn) Session() *Session { return c.s }

// Framer frames the connection's deliveries.
func (c *Conn) Framer() *Framer { return c.framer }

// attachLocked gives m a subscription of the connection's client, attached to m's
// topic by Subscribe (at once when the connection already subscribed).
func (c *Conn) attachLocked(m *Sub) {
	m.hsub = c.client.NewSubscription(m.req.Name)
	c.s.byHub[m.hsub] = m
	a := attachment{m, m.hsub, upstream.Join{Spec: m.spec, Resume: m.resume}}
	m.resume = api.Resume{}
	c.s.table.hooks.Attached(m.spec.Kind)
	if c.started {
		c.wg.Go(func() { c.run(a) })
	} else {
		c.pending = append(c.pending, a)
	}
}

// Subscribe attaches the connection's subscriptions to their topics.
func (c *Conn) Subscribe() {
	c.s.mu.Lock()
	c.started = true
	pending := c.pending
	c.pending = nil
	for _, a := range pending {
		c.wg.Go(func() { c.run(a) })
	}
	c.s.mu.Unlock()
}

func (c *Conn) run(a attachment) {
	if err := a.m.topic.Subscribe(c.ctx, a.hsub, a.join); err != nil && c.ctx.Err() == nil {
		c.s.table.hooks.SubscribeFailed(a.m.req.Name, err)
	}
}

// Framer re-frames topic messages for a multiplexed stream: each event under its
// subscription's name, with an id of every subscription's position.
type Framer struct {
	s *Session
	// ended are subscriptions whose topic ended in what was framed.
	ended []*Sub
}

// Frame appends d's events.
func (f *Framer) Frame(dst []byte, d hub.Delivery) ([]byte, int, bool) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byHub[d.Sub]
	if m == nil || m.hsub != d.Sub {
		// Removed meanwhile.
		return dst, 0, false
	}
	for _, ev := range d.Msg.Events {
		if ev.ID != "" && ev.ID != m.pos {
			m.setPos(ev.ID)
		}
		dst = sse.AppendField(dst, "event", m.req.Name)
		dst = s.appendIDLocked(dst)
		dst = append(dst, ev.Data...)
		dst = append(dst, '\n')
	}
	switch {
	case m.final != nil:
		if d.Msg == m.final {
			delete(s.byHub, d.Sub)
			m.hsub = nil
		}
	case d.Msg.End:
		f.ended = append(f.ended, m)
	}
	return dst, len(d.Msg.Events), false
}

// TakeEnded returns the subscriptions whose end was framed since the last call: the
// caller removes them (Remove) once they are written.
func (f *Framer) TakeEnded() []*Sub {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	ended := f.ended
	f.ended = nil
	return ended
}

// LastEventID is the id after what was framed.
func (f *Framer) LastEventID() string {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.idLocked()
}
