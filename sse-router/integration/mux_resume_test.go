package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/session"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// muxFixture is a multiplexed stream of a pod list and a pod log (in its URL) and of
// the namespace's events (added by POST), fed with markers.
type muxFixture struct {
	t    *testing.T
	env  *clustertest.Env
	ns   string
	tok  string
	pl   *clustertest.PodLog
	path string // mux?subscribe=…
}

func newMuxFixture(t *testing.T) *muxFixture {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	f := &muxFixture{t: t, env: env, ns: ns, tok: env.Tokens["admin"], pl: env.PodLog(t, ns, "web-1", "main")}
	appendLines(t, f.pl, "old", 0, 2)
	runningPod(t, env, ns, "web-1", "web")
	env.WaitPodLogServed(t, ns, "web-1", "main")
	f.path = "mux?" + url.Values{"subscribe": {"pods:" + f.podsPath(), "log:" + f.logPath()}}.Encode()
	return f
}

func (f *muxFixture) podsPath() string   { return "namespaces/" + f.ns + "/pods?app=web" }
func (f *muxFixture) logPath() string    { return "namespaces/" + f.ns + "/pods/web-1/log?container=main" }
func (f *muxFixture) eventsPath() string { return "namespaces/" + f.ns + "/events" }

// feed writes marker m on each subscription; it returns the log lines written.
func (f *muxFixture) feed(m string) []string {
	label(f.t, f.env, f.ns, "web-1", "marker", m)
	lines := appendLines(f.t, f.pl, "mux-"+m, 0, 3)
	_, err := f.env.AdminClientset(f.t).CoreV1().Events(f.ns).Create(context.Background(), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "web-1-"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: f.ns},
		Reason:         "Tested", Message: "event " + m, Type: corev1.EventTypeNormal,
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return lines
}

// seenAll reads c until every subscription showed marker m.
func (f *muxFixture) seenAll(c *client, m string) []record {
	var pods, log, ev bool
	return collect(f.t, c, 90*time.Second, "marker "+m+" on every subscription", func(e sse.Event) bool {
		pods = pods || (e.Type == "pods" && strings.Contains(e.Data, `"marker":"`+m+`"`))
		log = log || (e.Type == "log" && strings.Contains(e.Data, "mux-"+m+" 0002"))
		ev = ev || (e.Type == "ev" && strings.Contains(e.Data, "event "+m))
		return pods && log && ev
	})
}

// start opens the stream on r and adds the events subscription.
func (f *muxFixture) start(r *router) (*client, session.Payload) {
	c := r.open(f.t, f.path, f.tok, "")
	p := sessionEvent(f.t, c)
	if status := addSubscription(f.t, r, f.tok, p.Session, "ev", f.eventsPath()); status != http.StatusCreated {
		f.t.Fatalf("POST: %d", status)
	}
	return c, p
}

func sessionEvent(t *testing.T, c *client) session.Payload {
	t.Helper()
	ev := c.next(t, 10*time.Second)
	var p session.Payload
	if ev.Type != "session" || json.Unmarshal([]byte(ev.Data), &p) != nil {
		t.Fatalf("first event %+v", ev)
	}
	return p
}

func addSubscription(t *testing.T, r *router, tok, sess, name, path string) int {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"path":%q}`, name, path)
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/api/v1/stream/mux/"+sess+"/subscriptions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// check verifies what a resumed stream got: exactly the log lines missed, and for each
// watch the changes missed (those the router sent a plain viewer after the position the
// id held), or, where the router cannot know them (exact says so), a full state.
func (f *muxFixture) check(last string, got []record, missed []string, refs map[string][]record, exact bool) {
	t := f.t
	id, err := session.ParseID(last)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	byName := map[string][]string{}
	for _, r := range got {
		switch r.typ {
		case "log":
			var l logEvent
			if json.Unmarshal([]byte(r.data), &l) == nil {
				lines = append(lines, l.Line)
			}
		default:
			byName[r.typ] = append(byName[r.typ], r.data)
		}
	}
	if !slices.Equal(lines, missed) {
		t.Errorf("log lines after resuming %q, want exactly %q", lines, missed)
	}
	for name, ref := range refs {
		e, ok := id.Find(name)
		if !ok || e.Pos == "" {
			t.Fatalf("the id holds no position of %s: %+v", name, id)
		}
		var want []string
		for _, r := range after(ref, e.Pos) {
			want = append(want, r.data)
		}
		switch {
		case len(want) > 0 && len(byName[name]) >= len(want) && slices.Equal(byName[name][:len(want)], want):
			// (Later changes may follow.)
		case !exact && len(byName[name]) > 0 && strings.Contains(byName[name][0], `"type":"snapshot"`):
			t.Logf("%s: the new router's watch started after position %s: a full state", name, e.Pos)
		default:
			t.Errorf("%s after resuming from %s:\n%q\nwant exactly\n%q", name, e.Pos, byName[name], want)
		}
	}
	noRepeats(t, "mux", got)
}

// Must show: a multiplexed stream read on router a resumes on router b with its
// Last-Event-ID: the subscription added by POST too, under the same session (which b
// then knows for POST), with exactly what was missed.
func TestMuxResumesOnAnotherReplica(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t)
	a := startRouter(t, f.env, nil)
	b := startRouter(t, f.env, nil)
	// Router b has viewers of the same watches (the other viewers a replica has): they
	// are the reference of what b sent.
	refPods := b.open(t, f.podsPath(), f.tok, "")
	refEvents := b.open(t, f.eventsPath(), f.tok, "")
	c, sess := f.start(a)
	f.feed("r1")
	seen := f.seenAll(c, "r1")
	last := seen[len(seen)-1].id
	c.close()
	missed := f.feed("r2")
	pods := collect(t, refPods, 60*time.Second, "r2 on b's pods", func(e sse.Event) bool { return strings.Contains(e.Data, `"marker":"r2"`) })
	evs := collect(t, refEvents, 60*time.Second, "r2 on b's events", func(e sse.Event) bool { return strings.Contains(e.Data, "event r2") })

	if status := addSubscription(t, b, f.tok, sess.Session, "x", f.podsPath()); status != http.StatusNotFound {
		t.Fatalf("POST to a router without the session: %d, want 404", status)
	}
	c2 := b.open(t, f.path, f.tok, last)
	p := sessionEvent(t, c2)
	if !p.Resumed || p.Session != sess.Session || len(p.Subscriptions) != 3 || p.Subscriptions[2].Name != "ev" {
		t.Fatalf("resumed on router b: %+v", p)
	}
	got := f.seenAll(c2, "r2")
	f.check(last, got, missed, map[string][]record{"pods": pods, "ev": evs}, true)
	if status := addSubscription(t, b, f.tok, sess.Session, "x", f.podsPath()); status != http.StatusCreated {
		t.Fatalf("POST to the router now serving the session: %d", status)
	}
}

// Must show: a multiplexed stream resumes across a router restart: the stopping router
// tells the client to reconnect (with its id), the new router rebuilds the session from
// it. Log lines resume exactly; a watch the new router started after the client's
// position resumes with a full state (its changes are not the router's to replay).
func TestMuxResumesAcrossRestart(t *testing.T) {
	t.Parallel()
	f := newMuxFixture(t)
	a := startRouter(t, f.env, nil)
	c, sess := f.start(a)
	f.feed("s1")
	f.seenAll(c, "s1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var last string
	c.until(t, 10*time.Second, "the reconnect event", func(e sse.Event) bool {
		last = e.ID
		return e.Type == "reconnect"
	})
	missed := f.feed("s2")

	n := startRouter(t, f.env, nil)
	c2 := n.open(t, f.path, f.tok, last)
	p := sessionEvent(t, c2)
	if !p.Resumed || p.Session != sess.Session || len(p.Subscriptions) != 3 {
		t.Fatalf("resumed after the restart: %+v", p)
	}
	got := f.seenAll(c2, "s2")
	f.check(last, got, missed, map[string][]record{}, false)
	for _, name := range []string{"pods", "ev"} {
		var first string
		for _, r := range got {
			if r.typ == name {
				first = r.data
				break
			}
		}
		if strings.Contains(first, `"marker":"s1"`) && !strings.Contains(first, `"type":"snapshot"`) {
			t.Errorf("%s: a change seen before the restart came again: %.200s", name, first)
		}
	}
}
