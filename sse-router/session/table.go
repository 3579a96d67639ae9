// Package session holds the multiplexed stream's sessions, apart from HTTP: their
// subscriptions and topics, their attachment to a connection's hub.Client, the framing of
// topic messages under subscription names with ids that carry every subscription's
// position (so that any router resumes the stream, see ID), and the parsing of
// subscription requests.
package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// Opener opens the topic of a stream (upstream.Streams); release gives it back.
type Opener interface {
	Open(spec api.Spec) (topic upstream.Topic, release func(), err error)
}

// Hooks tell the router what sessions do (metrics, logs). Any may be nil.
type Hooks struct {
	// Attached and Detached count subscriptions attached to their topics.
	Attached, Detached func(kind api.Kind)
	// SubscribeFailed: a topic refused a subscription.
	SubscribeFailed func(name string, err error)
}

// Errors of the session's operations.
var (
	// ErrClosed: the session ended (linger passed, or its token was revoked).
	ErrClosed = errors.New("the session was closed")
	// ErrExists: the session already has a subscription of that name.
	ErrExists = errors.New("the session already has a subscription of that name")
	// ErrFull: the session has the most subscriptions allowed.
	ErrFull = errors.New("the session has the most subscriptions allowed")
	// ErrTooLong: the subscription would make the session's ids too long to be sent back.
	ErrTooLong = errors.New("the session's subscriptions are too long to be resumed")
)

// OpenError: a subscription's topic could not be opened.
type OpenError struct {
	Name string
	Err  error
}

func (e *OpenError) Error() string { return "subscription " + e.Name + ": " + e.Err.Error() }
func (e *OpenError) Unwrap() error { return e.Err }

// Table holds a process's live sessions: connected, or lingering after their
// connection so that a reconnection to this process finds them (POST and DELETE need
// them; resuming does not).
type Table struct {
	linger  time.Duration
	maxSubs int
	hooks   Hooks

	mu sync.Mutex
	m  map[string]*Session
}

// NewTable makes a table whose sessions linger that long without a connection and hold
// at most maxSubs subscriptions.
func NewTable(linger time.Duration, maxSubs int, hooks Hooks) *Table {
	if hooks.Attached == nil {
		hooks.Attached = func(api.Kind) {}
	}
	if hooks.Detached == nil {
		hooks.Detached = func(api.Kind) {}
	}
	if hooks.SubscribeFailed == nil {
		hooks.SubscribeFailed = func(string, error) {}
	}
	return &Table{linger: max(linger, time.Millisecond), maxSubs: maxSubs, hooks: hooks, m: map[string]*Session{}}
}

// Get returns the live session id of user (nil: none, or another user's).
func (t *Table) Get(id string, user authz.User) *Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[id]
	if s == nil || !sameUser(s.user, user) {
		return nil
	}
	return s
}

// Len is the number of live sessions.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func sameUser(a, b authz.User) bool { return a.Name == b.Name && a.UID == b.UID }

// add registers s under its id, or under a new one when the id is taken.
func (t *Table) add(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.m[s.id] != nil {
		s.setID(newSessionBytes())
	}
	t.m[s.id] = s
}

func (t *Table) remove(s *Session) {
	t.mu.Lock()
	if t.m[s.id] == s {
		delete(t.m, s.id)
	}
	t.mu.Unlock()
}

// CloseAll closes every session.
func (t *Table) CloseAll() {
	t.mu.Lock()
	all := make([]*Session, 0, len(t.m))
	for _, s := range t.m {
		all = append(all, s)
	}
	t.mu.Unlock()
	for _, s := range all {
		s.Close()
	}
}

// Plan is what a connection request resumes or starts: the session it takes over (one
// of this process), or the one it makes, and the subscriptions to open.
type Plan struct {
	// Open are the subscriptions to open: each must be authorized before Start, and may
	// be dropped (Drop) when the user may no longer have it.
	Open []Want
	// Resumed: the request resumes a session (its Last-Event-ID is one).
	Resumed bool

	live    *Session
	session [sessionLen]byte
	last    *ID
	ended   []Entry   // URL subscriptions that ended: they stay ended
	dropped []dropped // subscriptions left out, with their final events
}

// Live says whether the request takes over a session of this process.
func (p *Plan) Live() bool { return p.live != nil }

// Subscriptions counts the subscriptions the session will have.
func (p *Plan) Subscriptions() int {
	n := len(p.Open)
	if p.live != nil {
		p.live.mu.Lock()
		n += len(p.live.subs)
		p.live.mu.Unlock()
	}
	return n
}

// Resolve plans a connection of user asking for the URL's subscriptions, resuming last
// (nil: none). A session of this process is taken over (its subscriptions are its own:
// those added and removed by POST and DELETE); otherwise the session is made again from
// the URL's subscriptions and those last carries, each from its position, under last's
// session id (another user's session of this process is never taken over: the request
// gets a session id of its own).
func (t *Table) Resolve(user authz.User, urlSubs []Want, last *ID, appLabel string) (*Plan, error) {
	p := &Plan{session: newSessionBytes()}
	if last != nil {
		t.mu.Lock()
		s := t.m[last.Session]
		t.mu.Unlock()
		p.Resumed, p.last = true, last
		switch {
		case s == nil:
			p.session, _ = decodeSessionID(last.Session)
		case sameUser(s.user, user):
			p.live = s
		}
	}
	if p.live != nil {
		p.live.mu.Lock()
		for _, w := range urlSubs {
			if p.live.find(w.Req.Name) == nil && p.live.findEnded(w.Req.Name) == nil {
				p.Open = append(p.Open, w)
			}
		}
		p.live.mu.Unlock()
		return p, p.resumeAll()
	}
	for _, w := range urlSubs {
		if e, ok := p.last.Find(w.Req.Name); ok && e.Pos == api.EndID && e.PathHash == PathHash(w.Req.Path) {
			p.ended = append(p.ended, Entry{Name: w.Req.Name, PathHash: e.PathHash, Pos: api.EndID})
			continue
		}
		p.Open = append(p.Open, w)
	}
	if p.last != nil {
		for _, e := range p.last.Entries {
			if !e.Carried || e.Pos == api.EndID || p.has(e.Name) {
				continue
			}
			req := Request{Name: e.Name, Path: e.Path}
			spec, err := ParseRequest(req, appLabel)
			if err != nil {
				var se *api.SpecError
				if errors.As(err, &se) {
					return nil, &api.SpecError{Field: "Last-Event-ID: subscription " + e.Name + ": " + se.Field, Detail: se.Detail}
				}
				return nil, err
			}
			p.Open = append(p.Open, Want{Req: req, Spec: spec, Carried: true})
		}
	}
	return p, p.resumeAll()
}

func (p *Plan) has(name string) bool {
	for _, w := range p.Open {
		if w.Req.Name == name {
			return true
		}
	}
	for _, e := range p.ended {
		if e.Name == name {
			return true
		}
	}
	return false
}

// resumeAll sets where each subscription to open resumes.
func (p *Plan) resumeAll() error {
	for i := range p.Open {
		w := &p.Open[i]
		rs, err := resumeOf(p.last, w.Req, w.Spec.Kind)
		if err != nil {
			return err
		}
		w.Resume = rs
	}
	return nil
}

// resumeOf is where the subscription req resumes after last: from its entry's
// position, when it is the same stream.
func resumeOf(last *ID, req Request, kind api.Kind) (api.Resume, error) {
	e, ok := last.Find(req.Name)
	if !ok || e.Pos == "" || e.PathHash != PathHash(req.Path) {
		return api.Resume{}, nil
	}
	rs, err := api.ParseResume(kind, e.Pos)
	if err != nil {
		return api.Resume{}, fmt.Errorf("subscription %s: %w", req.Name, err)
	}
	return rs, nil
}

// Drop leaves out the subscription of Open at i: its final event (final, the data of
// an `error` event) follows the session's first event, under its name.
func (p *Plan) Drop(i int, final []byte) {
	p.dropped = append(p.dropped, dropped{p.Open[i].Req.Name, final})
	p.Open = append(p.Open[:i:i], p.Open[i+1:]...)
}

// Start opens the plan's topics and makes (or takes over) the session for a connection
// whose hub client is c. It returns the connection, and the stream's first bytes: the
// `session` event, then the final events of dropped subscriptions. ctx bounds the
// connection's attachments (it is cancelled when the connection detaches).
func (t *Table) Start(ctx context.Context, p *Plan, user authz.User, open Opener, c *hub.Client) (*Conn, []byte, error) {
	subs := make([]*Sub, 0, len(p.Open))
	releaseAll := func() {
		for _, m := range subs {
			m.release()
		}
	}
	for _, w := range p.Open {
		topic, release, err := open.Open(w.Spec)
		if err != nil {
			releaseAll()
			return nil, nil, &OpenError{Name: w.Req.Name, Err: err}
		}
		m := newSub(w, topic, release)
		subs = append(subs, m)
	}
	s := p.live
	if s == nil {
		s = newSession(t, p.session, user)
		for _, e := range p.ended {
			s.ended = append(s.ended, &Sub{req: Request{Name: e.Name}, hash: e.PathHash})
			s.ended[len(s.ended)-1].setPos(api.EndID)
		}
		t.add(s)
	}
	conn := newConn(ctx, s, c)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.cancel()
		releaseAll()
		return nil, nil, ErrClosed
	}
	old := s.takeOverLocked(conn, p.last)
	for _, m := range subs {
		s.subs = append(s.subs, m)
		conn.attachLocked(m)
	}
	first := s.sessionEventLocked(p.Resumed)
	for _, d := range p.dropped {
		first = sse.AppendEvent(first, d.name, s.idLocked(), sse.AppendData(nil, d.final))
	}
	s.mu.Unlock()
	s.finishTakeOver(old)
	return conn, first, nil
}

type dropped struct {
	name  string
	final []byte
}
