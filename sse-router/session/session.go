package session

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// Session is one multiplexed stream across its connections.
type Session struct {
	table  *Table
	user   authz.User
	id     string // in the session's URLs
	header string // the ids' header

	mu     sync.Mutex
	subs   []*Sub
	ended  []*Sub // URL subscriptions that ended: their end stays in the ids
	byHub  map[*hub.Subscription]*Sub
	conn   *Conn
	timer  *time.Timer
	closed bool
}

func newSession(t *Table, id [sessionLen]byte, user authz.User) *Session {
	s := &Session{table: t, user: user, byHub: map[*hub.Subscription]*Sub{}}
	s.setID(id)
	return s
}

func (s *Session) setID(b [sessionLen]byte) {
	s.id = encodeSessionID(b)
	s.header = encodeHeader(b)
}

// ID is the session's id, as in its URLs.
func (s *Session) ID() string { return s.id }

// Sub is one subscription of a session.
type Sub struct {
	req     Request
	spec    api.Spec
	carried bool
	hash    uint32
	topic   upstream.Topic
	release func()

	// Under the session's lock.
	pos    string // the last position framed
	enc    string // its entry in ids
	resume api.Resume
	hsub   *hub.Subscription // the current attachment; nil while detached
	// final, once set, is the revoked subscription's last message: framed, and then
	// nothing more of it.
	final *hub.Message
}

func newSub(w Want, topic upstream.Topic, release func()) *Sub {
	m := &Sub{req: w.Req, spec: w.Spec, carried: w.Carried, hash: PathHash(w.Req.Path), topic: topic, release: release, resume: w.Resume}
	m.setPos(w.Resume.ID)
	return m
}

// Name is the subscription's name (its events').
func (m *Sub) Name() string { return m.req.Name }

// Spec is the subscription's stream.
func (m *Sub) Spec() api.Spec { return m.spec }

func (m *Sub) setPos(pos string) {
	m.pos = pos
	e := Entry{Name: m.req.Name, Carried: m.carried, PathHash: m.hash, Pos: pos}
	if m.carried {
		e.Path = m.req.Path
	}
	m.enc = encodeEntry(e)
}

func (s *Session) find(name string) *Sub {
	for _, m := range s.subs {
		if m.req.Name == name {
			return m
		}
	}
	return nil
}

func (s *Session) findEnded(name string) *Sub {
	for _, m := range s.ended {
		if m.req.Name == name {
			return m
		}
	}
	return nil
}

// Subs returns the session's subscriptions.
func (s *Session) Subs() []*Sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subs)
}

// appendIDLocked appends the id field of the subscriptions' current positions.
func (s *Session) appendIDLocked(dst []byte) []byte {
	dst = append(dst, "id: "...)
	dst = append(dst, IDPrefix...)
	dst = append(dst, s.header...)
	for _, m := range s.subs {
		dst = append(dst, m.enc...)
	}
	for _, m := range s.ended {
		dst = append(dst, m.enc...)
	}
	return append(dst, '\n')
}

func (s *Session) idLocked() string {
	b := s.appendIDLocked(make([]byte, 0, 128))
	return string(b[len("id: ") : len(b)-1])
}

// idLenLocked is the length of the current id.
func (s *Session) idLenLocked() int {
	n := len(IDPrefix) + len(s.header)
	for _, m := range s.subs {
		n += len(m.enc)
	}
	for _, m := range s.ended {
		n += len(m.enc)
	}
	return n
}

// Payload is the data of the `session` event.
type Payload struct {
	Type          string    `json:"type"`
	Session       string    `json:"session"`
	Resumed       bool      `json:"resumed"`
	Subscriptions []Request `json:"subscriptions"`
}

func (s *Session) sessionEventLocked(resumed bool) []byte {
	p := Payload{Type: EventSession, Session: s.id, Resumed: resumed, Subscriptions: []Request{}}
	for _, m := range s.subs {
		p.Subscriptions = append(p.Subscriptions, m.req)
	}
	b, _ := json.Marshal(p)
	return sse.AppendEvent(nil, EventSession, s.idLocked(), sse.AppendData(nil, b))
}

type detached struct {
	m    *Sub
	hsub *hub.Subscription
}

type takeover struct {
	conn   *Conn
	detach []detached
}

// takeOverLocked makes conn the session's connection: every subscription is attached
// to it, resuming where last says the browser stood.
func (s *Session) takeOverLocked(conn *Conn, last *ID) takeover {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	old := takeover{conn: s.conn}
	s.conn = conn
	for _, m := range s.subs {
		if m.hsub != nil {
			old.detach = append(old.detach, detached{m, m.hsub})
			delete(s.byHub, m.hsub)
			m.hsub = nil
		}
		// What was framed after last never reached the browser: it resumes from last.
		rs, _ := resumeOf(last, m.req, m.spec.Kind)
		m.resume = rs
		m.setPos(rs.ID)
		conn.attachLocked(m)
	}
	return old
}

func (s *Session) finishTakeOver(old takeover) {
	if old.conn != nil {
		old.conn.client.Close(hub.ReasonReplaced)
	}
	for _, d := range old.detach {
		d.m.topic.Unsubscribe(d.hsub)
		s.table.hooks.Detached(d.m.spec.Kind)
	}
}

// Detach ends conn's hold on the session; the session lingers for a reconnection.
func (s *Session) Detach(conn *Conn) {
	conn.client.Close("disconnected")
	conn.cancel()
	var ds []detached
	s.mu.Lock()
	if s.conn == conn {
		s.conn = nil
		for _, m := range s.subs {
			if m.hsub != nil && m.hsub.Client() == conn.client {
				ds = append(ds, detached{m, m.hsub})
				delete(s.byHub, m.hsub)
				m.hsub = nil
			}
		}
	}
	s.mu.Unlock()
	conn.wg.Wait()
	for _, d := range ds {
		d.m.topic.Unsubscribe(d.hsub)
		s.table.hooks.Detached(d.m.spec.Kind)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil && !s.closed && s.timer == nil {
		s.timer = time.AfterFunc(s.table.linger, func() {
			s.mu.Lock()
			idle := s.conn == nil
			s.mu.Unlock()
			if idle {
				s.Close()
			}
		})
	}
}

// Close releases everything the session holds.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	subs := s.subs
	s.subs = nil
	var ds []detached
	for _, m := range subs {
		if m.hsub != nil {
			ds = append(ds, detached{m, m.hsub})
		}
	}
	if s.conn != nil {
		s.conn.client.Close(hub.ReasonShutdown)
	}
	s.mu.Unlock()
	s.table.remove(s)
	for _, d := range ds {
		d.m.topic.Unsubscribe(d.hsub)
		s.table.hooks.Detached(d.m.spec.Kind)
	}
	for _, m := range subs {
		m.release()
	}
}

// Add adds a subscription (POST): it is carried by the session's ids from then on.
func (s *Session) Add(req Request, spec api.Spec, open Opener) error {
	topic, release, err := open.Open(spec)
	if err != nil {
		return &OpenError{Name: req.Name, Err: err}
	}
	m := newSub(Want{Req: req, Spec: spec, Carried: true}, topic, release)
	s.mu.Lock()
	switch {
	case s.closed:
		err = ErrClosed
	case s.find(req.Name) != nil:
		err = ErrExists
	case len(s.subs) >= s.table.maxSubs:
		err = ErrFull
	case s.idLenLocked()+len(m.enc)+maxPosGrowth*(len(s.subs)+len(s.ended)+1) > maxCarried:
		err = ErrTooLong
	}
	if err != nil {
		s.mu.Unlock()
		release()
		return err
	}
	s.subs = append(s.subs, m)
	if s.conn != nil {
		s.conn.attachLocked(m)
	}
	s.mu.Unlock()
	return nil
}

// maxPosGrowth is how much an entry's text may grow with positions (numbers and log
// positions: at most 30 bytes).
const maxPosGrowth = 40

// Find returns the subscription named name.
func (s *Session) Find(name string) *Sub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.find(name)
}

// Remove removes a subscription. A final message, when given, is delivered last under
// the subscription's name: the framer still names its deliveries until it has framed
// final, then forgets it.
func (s *Session) Remove(m *Sub, final *hub.Message) {
	s.mu.Lock()
	i := slices.Index(s.subs, m)
	if i < 0 {
		s.mu.Unlock()
		return
	}
	s.subs = slices.Delete(s.subs, i, i+1)
	if m.pos == api.EndID && !m.carried && final == nil {
		s.ended = append(s.ended, m)
	}
	hsub := m.hsub
	if hsub != nil {
		if final != nil {
			m.final = final
		} else {
			delete(s.byHub, hsub)
			m.hsub = nil
		}
	}
	s.mu.Unlock()
	if hsub != nil {
		m.topic.Unsubscribe(hsub)
		s.table.hooks.Detached(m.spec.Kind)
		if final != nil {
			hsub.Deliver(final)
		}
	}
	m.release()
}

// Revoke ends a subscription whose rights were revoked: its last event is an `error`
// with payload (JSON), under its name, and the session no longer has it.
func (s *Session) Revoke(m *Sub, payload []byte) {
	s.Remove(m, hub.NewMessage(true, hub.NewEvent(api.EventError, "", payload)))
}

// String is for logs.
func (s *Session) String() string { return "session " + s.id + " of " + strings.TrimSpace(s.user.Name) }
