package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// The multiplexed stream carries several subscriptions on one EventSource, so that a
// portal page needs one connection however many panels it shows (browsers allow six per
// host over HTTP/1.1). Its events are named after the subscriptions; each event's data is
// the subscription's own (with its "type"). Its ids are "<session>.<seq>": the session
// remembers which position of each subscription every seq stood for, so that a
// reconnecting browser (Last-Event-ID) resumes every subscription exactly.
//
//	GET    /api/v1/stream/mux?subscribe=<name>:<stream path>&subscribe=…
//	POST   /api/v1/stream/mux/{session}/subscriptions   {"name": "...", "path": "..."}
//	DELETE /api/v1/stream/mux/{session}/subscriptions/{name}
//
// Connection-level events: `session` (first: the session id and its subscriptions),
// `error` (the stream is closed, with the reason: 401 when the token is no longer
// accepted), `reconnect` (the router is stopping, or the connection reached its maximum
// lifetime). A subscription whose rights were revoked gets a last event under its name,
// of type `error` with status 403, and leaves the session; the others go on.

// Reserved event names a subscription cannot take.
var reservedNames = []string{"session", "error", "reconnect", "message"}

// EventSession is the first event of a multiplexed stream.
const EventSession = "session"

// SubscriptionRequest is the body of POST …/subscriptions, and one subscription in a
// `session` event.
type SubscriptionRequest struct {
	// Name is the subscription's event name: a letter, then letters, digits, '_', '-'
	// or '.', at most 64 characters.
	Name string `json:"name"`
	// Path is the stream, as under /api/v1/stream/ (with its query), e.g.
	// "clusters/local/namespaces/shop/pods?app=web".
	Path string `json:"path"`
}

type sessionPayload struct {
	Type          string                `json:"type"`
	Session       string                `json:"session"`
	Resumed       bool                  `json:"resumed"`
	Subscriptions []SubscriptionRequest `json:"subscriptions"`
}

func validName(n string) error {
	if n == "" || len(n) > 64 {
		return errors.New("must be 1 to 64 characters")
	}
	for i, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'):
		default:
			return errors.New("must start with a letter and hold only letters, digits, '_', '-' and '.'")
		}
	}
	if slices.Contains(reservedNames, n) {
		return fmt.Errorf("%q is reserved", n)
	}
	return nil
}

// parseSubscription validates a subscription's name and stream path.
func parseSubscription(req SubscriptionRequest, appLabel string) (api.Spec, error) {
	if err := validName(req.Name); err != nil {
		return api.Spec{}, &api.SpecError{Field: "name", Detail: err.Error()}
	}
	if len(req.Path) > 4096 {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "too long"}
	}
	u, err := url.Parse(req.Path)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Fragment != "" {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "must be a stream path such as namespaces/shop/pods?app=web"}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "invalid query: " + err.Error()}
	}
	spec, err := api.ParseSpec(u.EscapedPath(), q, appLabel)
	if err != nil {
		var se *api.SpecError
		if errors.As(err, &se) {
			return api.Spec{}, &api.SpecError{Field: "path: " + se.Field, Detail: se.Detail}
		}
		return api.Spec{}, err
	}
	if spec.LastEventID != "" {
		return api.Spec{}, &api.SpecError{Field: "path: lastEventId", Detail: "not allowed in a subscription"}
	}
	return spec, nil
}

// parseSubscriptionBody parses the JSON body of POST …/subscriptions.
func parseSubscriptionBody(body []byte, appLabel string) (SubscriptionRequest, api.Spec, error) {
	var req SubscriptionRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, api.Spec{}, &api.SpecError{Field: "body", Detail: "must be a JSON object {\"name\": ..., \"path\": ...}: " + err.Error()}
	}
	if dec.More() {
		return req, api.Spec{}, &api.SpecError{Field: "body", Detail: "must hold one JSON object"}
	}
	spec, err := parseSubscription(req, appLabel)
	return req, spec, err
}

// parseQuerySubscription parses one `subscribe=<name>:<path>` query value.
func parseQuerySubscription(v, appLabel string) (SubscriptionRequest, api.Spec, error) {
	name, path, ok := strings.Cut(v, ":")
	if !ok {
		return SubscriptionRequest{}, api.Spec{}, &api.SpecError{Field: "subscribe", Detail: "must be <name>:<stream path>"}
	}
	req := SubscriptionRequest{Name: name, Path: path}
	spec, err := parseSubscription(req, appLabel)
	if err != nil {
		var se *api.SpecError
		if errors.As(err, &se) {
			return req, spec, &api.SpecError{Field: "subscribe " + name + ": " + se.Field, Detail: se.Detail}
		}
	}
	return req, spec, err
}

// parseMuxID parses a multiplexed stream's event id "<session>.<seq>".
func parseMuxID(id string) (session string, seq uint64, err error) {
	session, s, ok := strings.Cut(id, ".")
	if !ok || len(session) != sessionIDLen || strings.Trim(session, sessionAlphabet) != "" {
		return "", 0, &api.SpecError{Field: "Last-Event-ID", Detail: "not an id of a multiplexed stream"}
	}
	seq, err = strconv.ParseUint(s, 10, 64)
	if err != nil || strings.TrimLeft(s, "0123456789") != "" {
		return "", 0, &api.SpecError{Field: "Last-Event-ID", Detail: "not an id of a multiplexed stream"}
	}
	return session, seq, nil
}

const (
	sessionIDLen    = 22 // 16 random bytes, base64url
	sessionAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
)

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sessions are the multiplexed sessions alive: connected, or lingering after their
// connection so that a reconnect resumes them.
type sessions struct {
	linger time.Duration
	mu     sync.Mutex
	m      map[string]*session
}

func newSessions(linger time.Duration) *sessions {
	return &sessions{linger: linger, m: map[string]*session{}}
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.m[id]
}

func (ss *sessions) add(s *session) {
	ss.mu.Lock()
	ss.m[s.id] = s
	ss.mu.Unlock()
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	if ss.m[s.id] == s {
		delete(ss.m, s.id)
	}
	ss.mu.Unlock()
}

func (ss *sessions) closeAll() {
	ss.mu.Lock()
	all := make([]*session, 0, len(ss.m))
	for _, s := range ss.m {
		all = append(all, s)
	}
	ss.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// session is one multiplexed stream across its reconnections.
type session struct {
	id    string
	user  authz.User
	owner *sessions

	mu      sync.Mutex
	subs    []*muxSub
	byHub   map[*hub.Subscription]*muxSub
	conn    *muxConn
	seq     uint64
	timer   *time.Timer
	closed  bool
	maxSubs int
}

// muxConn is a session's current connection.
type muxConn struct {
	client *hub.Client
	ctx    context.Context
	wg     sync.WaitGroup
}

// muxSub is one subscription of a session.
type muxSub struct {
	req     SubscriptionRequest
	spec    api.Spec
	topic   upstream.Topic
	release func()
	hsub    *hub.Subscription // the current attachment; nil while detached
	// final, once set, is the revoked subscription's last message: framed, and then
	// nothing more of it.
	final *hub.Message
	// written remembers, for the last seqs written, the subscription's position then.
	written    []posRecord
	evicted    posRecord
	hasEvicted bool
}

type posRecord struct {
	seq uint64
	id  string
}

const maxPosRecords = 1024

func (m *muxSub) record(seq uint64, id string) {
	if len(m.written) == maxPosRecords {
		m.evicted, m.hasEvicted = m.written[0], true
		m.written = append(m.written[:0], m.written[1:]...)
	}
	m.written = append(m.written, posRecord{seq, id})
}

// positionAt is the subscription's position once the browser had every event up to seq:
// known says whether the session can tell.
func (m *muxSub) positionAt(seq uint64) (id string, known bool) {
	for i := len(m.written) - 1; i >= 0; i-- {
		if m.written[i].seq <= seq {
			return m.written[i].id, true
		}
	}
	if m.hasEvicted {
		if m.evicted.seq <= seq {
			return m.evicted.id, true
		}
		return "", false
	}
	// Nothing written at or before seq: the subscription starts afresh.
	return "", true
}

// forget drops what was written after seq: the browser never got it.
func (m *muxSub) forget(seq uint64) {
	i := len(m.written)
	for i > 0 && m.written[i-1].seq > seq {
		i--
	}
	m.written = m.written[:i]
}

func (s *session) find(name string) *muxSub {
	for _, m := range s.subs {
		if m.req.Name == name {
			return m
		}
	}
	return nil
}

// close releases everything the session holds.
func (s *session) close() {
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
	if s.conn != nil {
		s.conn.client.Close(hub.ReasonShutdown)
	}
	s.mu.Unlock()
	s.owner.remove(s)
	for _, m := range subs {
		if m.hsub != nil {
			m.topic.Unsubscribe(m.hsub)
		}
		m.release()
	}
}

// muxFramer re-frames topic messages for a multiplexed stream.
type muxFramer struct {
	s *session
	// ended are subscriptions whose topic ended in what was framed.
	ended []*muxSub
}

func (f *muxFramer) frame(dst []byte, d hub.Delivery) ([]byte, int, bool) {
	s := f.s
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.byHub[d.Sub]
	if m == nil || m.hsub != d.Sub {
		// Removed meanwhile.
		return dst, 0, false
	}
	for _, ev := range d.Msg.Events {
		s.seq++
		dst = sse.AppendField(dst, "event", m.req.Name)
		dst = sse.AppendField(dst, "id", s.id+"."+strconv.FormatUint(s.seq, 10))
		dst = append(dst, ev.Data...)
		dst = append(dst, '\n')
		if ev.ID != "" {
			m.record(s.seq, ev.ID)
		}
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

func (f *muxFramer) lastEventID() string {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return f.s.id + "." + strconv.FormatUint(f.s.seq, 10)
}

// sessionEventLocked frames the `session` event.
func (s *session) sessionEventLocked(resumed bool) []byte {
	p := sessionPayload{Type: EventSession, Session: s.id, Resumed: resumed, Subscriptions: []SubscriptionRequest{}}
	for _, m := range s.subs {
		p.Subscriptions = append(p.Subscriptions, m.req)
	}
	s.seq++
	return sse.AppendEvent(nil, EventSession, s.id+"."+strconv.FormatUint(s.seq, 10), sse.AppendData(nil, mustJSON(p)))
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
	var (
		resumeSession string
		resumeSeq     uint64
	)
	if id := lastEventID(r, q.Get("lastEventId")); id != "" {
		var err error
		if resumeSession, resumeSeq, err = parseMuxID(id); err != nil {
			s.refuse(w, specProblem(err))
			return
		}
	}
	type wanted struct {
		req  SubscriptionRequest
		spec api.Spec
	}
	var subs []wanted
	for _, v := range q["subscribe"] {
		req, spec, err := parseQuerySubscription(v, s.cfg.AppLabel)
		if err != nil {
			s.refuse(w, specProblem(err))
			return
		}
		for _, o := range subs {
			if o.req.Name == req.Name {
				s.refuse(w, problem.BadRequest("invalid stream request", problem.FieldError{Field: "subscribe", Detail: fmt.Sprintf("name %q given twice", req.Name)}))
				return
			}
		}
		subs = append(subs, wanted{req, spec})
	}
	if len(subs) > s.cfg.MaxSubscriptions {
		s.refuse(w, problem.BadRequest(fmt.Sprintf("at most %d subscriptions per stream", s.cfg.MaxSubscriptions)))
		return
	}
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	defaultRV := s.reviewers[s.clusters.Default().Name]
	user, err := defaultRV.Authenticate(r.Context(), token)
	if err != nil {
		s.refuse(w, s.authProblem(err))
		return
	}
	for _, sub := range subs {
		rv, ok := s.reviewer(sub.spec.Cluster)
		if !ok {
			s.refuse(w, problem.NotFound(fmt.Sprintf("subscription %s: unknown cluster %q", sub.req.Name, sub.spec.Cluster)))
			return
		}
		if _, err := rv.Check(r.Context(), token, sub.spec.Actions()...); err != nil {
			p := s.authProblem(err)
			p.Detail = "subscription " + sub.req.Name + ": " + p.Detail
			s.refuse(w, p)
			return
		}
	}
	if s.shuttingDown() {
		s.refuse(w, problem.New(http.StatusServiceUnavailable, "the router is shutting down: reconnect"))
		return
	}

	sess := s.sessions.get(resumeSession)
	resumed := sess != nil && sess.user.Name == user.Name && sess.user.UID == user.UID
	if !resumed {
		sess = &session{id: newSessionID(), user: user, owner: s.sessions, byHub: map[*hub.Subscription]*muxSub{}, maxSubs: s.cfg.MaxSubscriptions}
	}
	// Open the query's subscriptions the session does not have yet.
	var opened []*muxSub
	for _, sub := range subs {
		sess.mu.Lock()
		have := sess.find(sub.req.Name) != nil
		sess.mu.Unlock()
		if have {
			continue
		}
		topic, release, err := s.streams.Open(sub.spec)
		if err != nil {
			for _, m := range opened {
				m.release()
			}
			p := openProblem(err)
			p.Detail = "subscription " + sub.req.Name + ": " + p.Detail
			s.refuse(w, p)
			return
		}
		opened = append(opened, &muxSub{req: sub.req, spec: sub.spec, topic: topic, release: release})
	}

	s.streamsWG.Add(1)
	defer s.streamsWG.Done()
	s.metrics.Clients.WithLabelValues("mux").Inc()
	defer s.metrics.Clients.WithLabelValues("mux").Dec()

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	c := hub.NewClient(s.cfg.QueueSize, s.metrics)
	conn := &muxConn{client: c, ctx: ctx}
	f := &muxFramer{s: sess}

	// Take the session over: attach every subscription to this connection, resuming
	// each where the browser's Last-Event-ID says it stood.
	sess.mu.Lock()
	if sess.closed {
		sess.mu.Unlock()
		for _, m := range opened {
			m.release()
		}
		s.refuse(w, problem.New(http.StatusServiceUnavailable, "the session was closed: reconnect"))
		return
	}
	if sess.timer != nil {
		sess.timer.Stop()
		sess.timer = nil
	}
	old := sess.conn
	sess.conn = conn
	var detach []*muxSub
	var detachHubs []*hub.Subscription
	type attach struct {
		m    *muxSub
		hsub *hub.Subscription
		join upstream.Join
	}
	var attaches []attach
	for _, m := range sess.subs {
		if m.hsub != nil {
			detach = append(detach, m)
			detachHubs = append(detachHubs, m.hsub)
			delete(sess.byHub, m.hsub)
		}
		join := upstream.Join{Spec: m.spec}
		if resumed {
			if id, known := m.positionAt(resumeSeq); known && id != "" {
				if rs, err := api.ParseResume(m.spec.Kind, id); err == nil {
					join.Resume = rs
				}
			}
			m.forget(resumeSeq)
		}
		m.hsub = c.NewSubscription(m.req.Name)
		sess.byHub[m.hsub] = m
		attaches = append(attaches, attach{m, m.hsub, join})
	}
	for _, m := range opened {
		m.hsub = c.NewSubscription(m.req.Name)
		sess.byHub[m.hsub] = m
		sess.subs = append(sess.subs, m)
		attaches = append(attaches, attach{m, m.hsub, upstream.Join{Spec: m.spec}})
	}
	first := sess.sessionEventLocked(resumed)
	sess.mu.Unlock()
	if old != nil {
		old.client.Close(hub.ReasonReplaced)
	}
	for i, m := range detach {
		m.topic.Unsubscribe(detachHubs[i])
		s.metrics.Subscriptions.WithLabelValues(string(m.spec.Kind)).Dec()
	}
	if !resumed {
		s.sessions.add(sess)
	}

	cw := s.startStream(w, r, c, f)
	if cw == nil || cw.write(first) != nil {
		s.detach(sess, conn)
		return
	}
	for _, a := range attaches {
		conn.wg.Go(func() { s.attach(conn, a.m, a.hsub, a.join) })
	}

	cw.afterWrite = func() {
		for _, m := range f.ended {
			s.removeSub(sess, m, nil)
		}
		f.ended = f.ended[:0]
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
		sess.mu.Lock()
		subs := slices.Clone(sess.subs)
		sess.mu.Unlock()
		for _, m := range subs {
			rv, ok := s.reviewer(m.spec.Cluster)
			if !ok {
				continue
			}
			if p, end := s.recheck(ctx, g, rv, m.spec.Actions()...); end {
				s.revokeSub(sess, m, p)
			}
		}
	}
	watch := s.rechecks.add(check)
	if resumed {
		// Subscriptions added to the session earlier were not checked with this request:
		// check them now rather than a period later.
		check(ctx)
	}
	cw.run(ctx)
	s.rechecks.remove(watch)
	cancel()
	s.detach(sess, conn)
	if c.Reason() == hub.ReasonRevoked {
		// Nobody may resume it: the token it was opened with is no longer accepted.
		sess.close()
	}
}

// revokeSub ends a subscription whose rights were revoked: its last event is an `error`
// (403) under its name, and the session no longer has it.
func (s *Server) revokeSub(sess *session, m *muxSub, p api.ErrorPayload) {
	s.removeSub(sess, m, hub.NewMessage(true, hub.NewEvent(api.EventError, "", mustJSON(p))))
}

// attach subscribes one of a session's subscriptions to its topic on conn.
func (s *Server) attach(conn *muxConn, m *muxSub, hsub *hub.Subscription, join upstream.Join) {
	s.metrics.Subscriptions.WithLabelValues(string(m.spec.Kind)).Inc()
	if err := m.topic.Subscribe(conn.ctx, hsub, join); err != nil && conn.ctx.Err() == nil {
		s.log.Warn("subscribe failed", "subscription", m.req.Name, "err", err)
	}
}

// detach ends conn's hold on the session; the session lingers for a reconnect.
func (s *Server) detach(sess *session, conn *muxConn) {
	conn.client.Close("disconnected")
	sess.mu.Lock()
	var hubs []*hub.Subscription
	var subs []*muxSub
	if sess.conn == conn {
		sess.conn = nil
		for _, m := range sess.subs {
			if m.hsub != nil && m.hsub.Client() == conn.client {
				hubs = append(hubs, m.hsub)
				subs = append(subs, m)
				delete(sess.byHub, m.hsub)
				m.hsub = nil
			}
		}
	}
	sess.mu.Unlock()
	conn.wg.Wait()
	for i, m := range subs {
		m.topic.Unsubscribe(hubs[i])
		s.metrics.Subscriptions.WithLabelValues(string(m.spec.Kind)).Dec()
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.conn == nil && !sess.closed && sess.timer == nil {
		sess.timer = time.AfterFunc(max(s.sessions.linger, time.Millisecond), func() {
			sess.mu.Lock()
			idle := sess.conn == nil
			sess.mu.Unlock()
			if idle {
				sess.close()
			}
		})
	}
}

// removeSub removes a subscription from its session. A final message, when given, is
// delivered last under the subscription's name: the framer still names its deliveries
// until it has framed final, then forgets it.
func (s *Server) removeSub(sess *session, m *muxSub, final *hub.Message) {
	sess.mu.Lock()
	i := slices.Index(sess.subs, m)
	if i < 0 {
		sess.mu.Unlock()
		return
	}
	sess.subs = slices.Delete(sess.subs, i, i+1)
	hsub := m.hsub
	if hsub != nil {
		if final != nil {
			m.final = final
		} else {
			delete(sess.byHub, hsub)
			m.hsub = nil
		}
	}
	sess.mu.Unlock()
	if hsub != nil {
		m.topic.Unsubscribe(hsub)
		s.metrics.Subscriptions.WithLabelValues(string(m.spec.Kind)).Dec()
		if final != nil {
			hsub.Deliver(final)
		}
	}
	m.release()
}

// sessionFor returns the caller's session, or answers the request.
func (s *Server) sessionFor(w http.ResponseWriter, r *http.Request, id string) (*session, string, bool) {
	token := authz.TokenFromRequest(r, s.cfg.TokenCookie)
	user, err := s.reviewers[s.clusters.Default().Name].Authenticate(r.Context(), token)
	if err != nil {
		s.refuse(w, s.authProblem(err))
		return nil, "", false
	}
	sess := s.sessions.get(id)
	if sess == nil || sess.user.Name != user.Name || sess.user.UID != user.UID {
		// Another user's session is as unknown as one that does not exist.
		s.refuse(w, problem.NotFound(fmt.Sprintf("no multiplexed session %q", id)))
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
	req, spec, err := parseSubscriptionBody(body, s.cfg.AppLabel)
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
	topic, release, err := s.streams.Open(spec)
	if err != nil {
		s.refuse(w, openProblem(err))
		return
	}
	m := &muxSub{req: req, spec: spec, topic: topic, release: release}
	sess.mu.Lock()
	switch {
	case sess.closed:
		sess.mu.Unlock()
		release()
		s.refuse(w, problem.NotFound(fmt.Sprintf("no multiplexed session %q", id)))
		return
	case sess.find(req.Name) != nil:
		sess.mu.Unlock()
		release()
		s.refuse(w, problem.Conflict(fmt.Sprintf("the session already has a subscription named %q", req.Name)))
		return
	case len(sess.subs) >= sess.maxSubs:
		sess.mu.Unlock()
		release()
		s.refuse(w, problem.Conflict(fmt.Sprintf("the session has the most subscriptions allowed (%d)", sess.maxSubs)))
		return
	}
	sess.subs = append(sess.subs, m)
	if conn := sess.conn; conn != nil {
		m.hsub = conn.client.NewSubscription(req.Name)
		sess.byHub[m.hsub] = m
		hsub := m.hsub
		conn.wg.Go(func() { s.attach(conn, m, hsub, upstream.Join{Spec: spec}) })
	}
	sess.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(mustJSON(req))
}

// serveRemoveSubscription removes a subscription from a session.
func (s *Server) serveRemoveSubscription(w http.ResponseWriter, r *http.Request, id, name string) {
	sess, _, ok := s.sessionFor(w, r, id)
	if !ok {
		return
	}
	sess.mu.Lock()
	m := sess.find(name)
	sess.mu.Unlock()
	if m == nil {
		s.refuse(w, problem.NotFound(fmt.Sprintf("no subscription %q in the session", name)))
		return
	}
	s.removeSub(sess, m, nil)
	w.WriteHeader(http.StatusNoContent)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"type":"error","message":"encoding failed"}`)
	}
	return b
}
