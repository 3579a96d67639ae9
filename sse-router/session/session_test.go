package session

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

var testUser = authz.User{Name: "alice", UID: "uid-alice"}

// fakeTopic records its joins; tests deliver to its subscribers.
type fakeTopic struct {
	mu    sync.Mutex
	subs  map[*hub.Subscription]upstream.Join
	joins []upstream.Join
}

func (f *fakeTopic) Subscribe(_ context.Context, s *hub.Subscription, j upstream.Join) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[s] = j
	f.joins = append(f.joins, j)
	return nil
}

func (f *fakeTopic) Unsubscribe(s *hub.Subscription) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, s)
}

func (f *fakeTopic) send(m *hub.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.Deliver(m)
	}
}

func (f *fakeTopic) lastJoin() upstream.Join {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.joins[len(f.joins)-1]
}

// opener gives one fake topic per spec key, shared like the router's.
type opener struct {
	mu     sync.Mutex
	topics map[string]*fakeTopic
	open   int
}

func newOpener() *opener { return &opener{topics: map[string]*fakeTopic{}} }

func (o *opener) Open(spec api.Spec) (upstream.Topic, func(), error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	k := spec.Key("local")
	t := o.topics[k]
	if t == nil {
		t = &fakeTopic{subs: map[*hub.Subscription]upstream.Join{}}
		o.topics[k] = t
	}
	o.open++
	return t, func() { o.mu.Lock(); o.open--; o.mu.Unlock() }, nil
}

func (o *opener) topic(t *testing.T, path string) *fakeTopic {
	t.Helper()
	_, spec, err := ParseQuery("x:"+path, "app")
	if err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.topics[spec.Key("local")]
}

// connect starts a connection as a router's handler does, resuming lastID.
func connect(t *testing.T, tb *Table, o *opener, urlSubs []string, lastID string) (*Conn, *hub.Client, *Plan, []sse.Event) {
	t.Helper()
	wants, err := ParseWants(urlSubs, "app", 8)
	if err != nil {
		t.Fatal(err)
	}
	var last *ID
	if lastID != "" {
		if last, err = ParseID(lastID); err != nil {
			t.Fatal(err)
		}
	}
	p, err := tb.Resolve(testUser, wants, last, "app")
	if err != nil {
		t.Fatal(err)
	}
	c := hub.NewClient(64, nil)
	conn, first, err := tb.Start(context.Background(), p, testUser, o, c)
	if err != nil {
		t.Fatal(err)
	}
	conn.Subscribe()
	time.Sleep(30 * time.Millisecond) // the attachments run aside
	return conn, c, p, parse(t, first)
}

func parse(t *testing.T, b []byte) []sse.Event {
	t.Helper()
	r := sse.NewReader(strings.NewReader(string(b)))
	var out []sse.Event
	for {
		ev, err := r.Next()
		if err != nil {
			return out
		}
		out = append(out, ev)
	}
}

// drain frames everything queued on c.
func drain(t *testing.T, conn *Conn, c *hub.Client) []sse.Event {
	t.Helper()
	var b []byte
	for {
		d, ok := c.Next(50 * time.Millisecond)
		if !ok {
			break
		}
		b, _, _ = conn.Framer().Frame(b, d)
	}
	for _, m := range conn.Framer().TakeEnded() {
		conn.Session().Remove(m, nil)
	}
	return parse(t, b)
}

func ev(name, id, data string) hub.Event { return hub.NewEvent(name, id, []byte(data)) }

const (
	podsPath = "namespaces/shop/pods"
	logPath  = "namespaces/shop/pods/web-1/log"
	wfPath   = "namespaces/shop/workflows/b1/log"
	addPath  = "namespaces/bank/pods"
)

// Must show: an id of one router resumes every subscription on another, from its
// position, including one added by POST; ended ones stay ended.
func TestResumeOnAnotherTable(t *testing.T) {
	o1, o2 := newOpener(), newOpener()
	tb1, tb2 := NewTable(time.Minute, 8, Hooks{}), NewTable(time.Minute, 8, Hooks{})
	url := []string{"pods:" + podsPath, "log:" + logPath, "wf:" + wfPath}
	conn, c, _, first := connect(t, tb1, o1, url, "")
	if len(first) != 1 || first[0].Type != EventSession || !strings.Contains(first[0].Data, `"resumed":false`) {
		t.Fatalf("first %+v", first)
	}
	sess := conn.Session()
	spec, _ := ParseRequest(Request{Name: "bank", Path: addPath}, "app")
	if err := sess.Add(Request{Name: "bank", Path: addPath}, spec, o1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	o1.topic(t, podsPath).send(hub.NewMessage(false, ev("snapshot", "100", `{"type":"snapshot"}`)))
	o1.topic(t, logPath).send(hub.NewMessage(false, ev("log", "1767323045000000000", `{"line":"a"}`), ev("log", "1767323045000000000.1", `{"line":"b"}`)))
	o1.topic(t, wfPath).send(hub.NewMessage(true, ev("end", api.EndID, `{"type":"end"}`)))
	o1.topic(t, addPath).send(hub.NewMessage(false, ev("added", "205", `{"type":"added"}`)))
	evs := drain(t, conn, c)
	if len(evs) != 5 {
		t.Fatalf("framed %+v", evs)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].ID == evs[i-1].ID {
			t.Fatalf("id %s twice", evs[i].ID)
		}
	}
	last := evs[len(evs)-1].ID
	id, err := ParseID(last)
	if err != nil || id.Session != sess.ID() || len(id.Entries) != 4 {
		t.Fatalf("%s: %+v %v", last, id, err)
	}
	sess.Detach(conn)

	conn2, c2, p2, first2 := connect(t, tb2, o2, url, last)
	if conn2.Session().ID() != sess.ID() || !p2.Resumed || p2.Live() {
		t.Fatalf("rebuilt session %s (resumed %v live %v), want %s", conn2.Session().ID(), p2.Resumed, p2.Live(), sess.ID())
	}
	if !strings.Contains(first2[0].Data, `"bank"`) || strings.Contains(first2[0].Data, `"wf"`) || !sameEntries(t, first2[0].ID, last) {
		t.Fatalf("rebuilt session event %+v, want the positions of %s", first2[0], last)
	}
	if o2.topic(t, wfPath) != nil {
		t.Fatal("the ended subscription was started again")
	}
	for path, want := range map[string]string{podsPath: "100", logPath: "1767323045000000000.1", addPath: "205"} {
		if j := o2.topic(t, path).lastJoin(); j.Resume.ID != want {
			t.Errorf("%s resumed from %q, want %q", path, j.Resume.ID, want)
		}
	}
	if j := o2.topic(t, logPath).lastJoin(); j.Resume.Log != (api.LogPos{Nanos: 1767323045000000000, Rank: 1}) {
		t.Errorf("log position %+v", j.Resume.Log)
	}
	// The same process finds the session for POST and DELETE; the first one does not.
	if tb2.Get(sess.ID(), testUser) == nil || tb2.Get(sess.ID(), authz.User{Name: "bob"}) != nil {
		t.Fatal("the rebuilt session is not in its table")
	}
	o2.topic(t, addPath).send(hub.NewMessage(false, ev("modified", "300", `{}`)))
	if evs := drain(t, conn2, c2); len(evs) != 1 || evs[0].Type != "bank" {
		t.Fatalf("after resuming %+v", evs)
	}
	conn2.Session().Close()
	if tb2.Len() != 0 || o2.open != 0 {
		t.Fatalf("closed session left %d sessions, %d topics open", tb2.Len(), o2.open)
	}
}

// The same process: the live session is taken over, each subscription resumes from the
// id (not from what was framed after it), the old connection is replaced.
func TestResumeLiveSession(t *testing.T) {
	o := newOpener()
	tb := NewTable(time.Minute, 8, Hooks{})
	url := []string{"pods:" + podsPath}
	conn, c, _, _ := connect(t, tb, o, url, "")
	o.topic(t, podsPath).send(hub.NewMessage(false, ev("snapshot", "100", `{}`)))
	seen := drain(t, conn, c)
	o.topic(t, podsPath).send(hub.NewMessage(false, ev("added", "101", `{}`)))
	if lost := drain(t, conn, c); len(lost) != 1 {
		t.Fatalf("%+v", lost)
	}
	conn2, c2, p, first := connect(t, tb, o, url, seen[0].ID)
	if !p.Live() || conn2.Session() != conn.Session() || first[0].ID != seen[0].ID {
		t.Fatalf("live %v, first %+v", p.Live(), first)
	}
	if c.Reason() != hub.ReasonReplaced {
		t.Fatalf("old connection: %q", c.Reason())
	}
	if j := o.topic(t, podsPath).lastJoin(); j.Resume.ID != "100" {
		t.Fatalf("resumed from %q", j.Resume.ID)
	}
	conn.Session().Detach(conn) // the old connection's cleanup
	o.topic(t, podsPath).send(hub.NewMessage(false, ev("added", "101", `{}`)))
	if evs := drain(t, conn2, c2); len(evs) != 1 {
		t.Fatalf("after the old connection's cleanup: %+v", evs)
	}
	// Another user with the id gets a session of their own.
	wants, _ := ParseWants(url, "app", 8)
	last, _ := ParseID(seen[0].ID)
	if p, _ := tb.Resolve(authz.User{Name: "bob"}, wants, last, "app"); p.Live() || p.session == last.sessionBytes() {
		t.Fatal("bob took alice's session over")
	}
}

// Must show: the id's text is kept per subscription and re-encoded only on a change;
// a POST that would let ids outgrow MaxIDLen is refused.
func TestIDBounds(t *testing.T) {
	o := newOpener()
	tb := NewTable(time.Minute, 64, Hooks{})
	conn, _, _, _ := connect(t, tb, o, nil, "")
	sess := conn.Session()
	var sel []string
	for i := range 150 {
		sel = append(sel, fmt.Sprintf("k%d=v", i))
	}
	long := "namespaces/shop/pods?labelSelector=" + strings.Join(sel, ",")
	var err error
	n := 0
	for ; err == nil; n++ {
		name := "p" + strings.Repeat("x", 60) + string(rune('a'+n%26)) + string(rune('a'+n/26))
		spec, perr := ParseRequest(Request{Name: name, Path: long}, "app")
		if perr != nil {
			t.Fatal(perr)
		}
		err = sess.Add(Request{Name: name, Path: long}, spec, o)
	}
	if err != ErrTooLong || n < 4 {
		t.Fatalf("after %d: %v", n, err)
	}
	sess.mu.Lock()
	id := sess.idLocked()
	sess.mu.Unlock()
	if len(id)+maxPosGrowth*len(sess.Subs()) > MaxIDLen {
		t.Fatalf("id of %d bytes", len(id))
	}
	if _, err := ParseID(id); err != nil {
		t.Fatal(err)
	}
}

// sameEntries: two ids hold the same positions (in any order).
func sameEntries(t *testing.T, a, b string) bool {
	t.Helper()
	ia, err := ParseID(a)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := ParseID(b)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Session != ib.Session || len(ia.Entries) != len(ib.Entries) {
		return false
	}
	for _, e := range ia.Entries {
		if !slices.Contains(ib.Entries, e) {
			return false
		}
	}
	return true
}
