package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/session"
)

func postJSON(t *testing.T, url, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestMux(t *testing.T) {
	f := newFakeCluster(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"}})
	f.allow("alice", "shop", "list pods", "watch pods", "list events", "watch events")
	_, ts := startServer(t, testConfig(), f)
	base := ts.URL + "/api/v1/stream/mux"
	q := url.Values{"subscribe": {"pods:namespaces/shop/pods", "events:namespaces/shop/events"}}

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer tok-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	er := readEvents(resp.Body)
	first := er.next(t, false)
	var sess sessionPayload
	if err := json.Unmarshal([]byte(first.Data), &sess); err != nil || first.Type != "session" || sess.Resumed || len(sess.Subscriptions) != 2 {
		t.Fatalf("first event %+v (%v)", first, err)
	}
	got := map[string]string{}
	for range 2 {
		ev := er.next(t, false)
		got[ev.Type] = ev.Data
	}
	if !strings.Contains(got["pods"], `"type":"snapshot"`) || !strings.Contains(got["pods"], "web-1") || !strings.Contains(got["events"], `"type":"snapshot"`) {
		t.Fatalf("snapshots %v", got)
	}
	// Subscriptions are checked as their streams are.
	subs := base + "/" + sess.Session + "/subscriptions"
	for _, c := range []struct {
		token, body string
		status      int
	}{
		{"tok-alice", `{"name":"w","path":"namespaces/shop/workflows"}`, 403},
		{"tok-bob", `{"name":"p2","path":"namespaces/shop/pods"}`, 404},
		{"tok-alice", `{"name":"pods","path":"namespaces/shop/pods"}`, 409},
		{"tok-alice", `{"name":"p2","path":"namespaces/shop/pods?x=1"}`, 400},
		{"", `{"name":"p2","path":"namespaces/shop/pods"}`, 401},
	} {
		if r := postJSON(t, subs, c.token, c.body); r.StatusCode != c.status {
			t.Errorf("POST %s as %q: %d, want %d", c.body, c.token, r.StatusCode, c.status)
		}
	}
	if r := postJSON(t, subs, "tok-alice", `{"name":"shop-pods","path":"namespaces/shop/pods?labelSelector=app%3Dweb"}`); r.StatusCode != 201 {
		t.Fatalf("add: %d", r.StatusCode)
	}
	if ev := er.next(t, false); ev.Type != "shop-pods" || !strings.Contains(ev.Data, "snapshot") {
		t.Fatalf("added subscription sent %+v", ev)
	}
	dreq, _ := http.NewRequest(http.MethodDelete, subs+"/shop-pods", nil)
	dreq.Header.Set("Authorization", "Bearer tok-alice")
	if r, err := http.DefaultClient.Do(dreq); err != nil || r.StatusCode != 204 {
		t.Fatalf("delete: %v %v", r, err)
	}

	// A change, then the connection drops; another change while away.
	kc := f.kube.CoreV1()
	if _, err := kc.Events("shop").Create(context.Background(), &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seen := er.next(t, false)
	if seen.Type != "events" || !strings.Contains(seen.Data, `"e1"`) {
		t.Fatalf("change %+v", seen)
	}
	cancel()
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond)
	if _, err := kc.Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Reconnecting with the last id resumes the session, each subscription from its state.
	resp2 := openStream(t, base+"?"+q.Encode(), "tok-alice", "Last-Event-ID: "+seen.ID)
	er2 := readEvents(resp2.Body)
	first = er2.next(t, false)
	if err := json.Unmarshal([]byte(first.Data), &sess); err != nil || !sess.Resumed {
		t.Fatalf("reconnect: %+v", first)
	}
	// The fake API server gives objects no resourceVersion, so positions cannot be
	// compared: each subscription gets its current state again, which this checks holds
	// the change missed. That only the missed changes are sent is shown against a real
	// API server (integration: TestMuxResumesOnAnotherReplica, TestMuxResumesAcrossRestart).
	again := map[string]string{}
	for range 2 {
		ev := er2.next(t, false)
		again[ev.Type] = ev.Data
	}
	if !strings.Contains(again["pods"], "web-2") || !strings.Contains(again["events"], `"e1"`) {
		t.Fatalf("after resuming: %v", again)
	}
	// Another user cannot take the session over: they get a session of their own.
	f.allow("bob", "shop", "list pods", "watch pods", "list events", "watch events")
	resp3 := openStream(t, base+"?"+q.Encode(), "tok-bob", "Last-Event-ID: "+seen.ID)
	er3 := readEvents(resp3.Body)
	var other sessionPayload
	if err := json.Unmarshal([]byte(er3.next(t, false).Data), &other); err != nil || other.Session == sess.Session {
		t.Fatalf("bob's session %+v", other)
	}
}

// Must show: a multiplexed stream's id resumes it on another router: the URL's
// subscriptions and the one added by POST, under the same session id, which that
// router then knows for POST and DELETE; a subscription the user lost there ends alone
// with a 403 under its name.
func TestMuxResumesOnAnotherRouter(t *testing.T) {
	f := newFakeCluster(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"}})
	f.allow("alice", "shop", "list pods", "watch pods", "list events", "watch events")
	_, ts1 := startServer(t, testConfig(), f)
	_, ts2 := startServer(t, testConfig(), f)
	q := url.Values{"subscribe": {"pods:namespaces/shop/pods"}}
	open := func(ts string, lastID string) (*eventReader, sessionPayload) {
		t.Helper()
		var hs []string
		if lastID != "" {
			hs = append(hs, "Last-Event-ID: "+lastID)
		}
		resp := openStream(t, ts+"/api/v1/stream/mux?"+q.Encode(), "tok-alice", hs...)
		if resp.StatusCode != 200 {
			t.Fatalf("open: %d", resp.StatusCode)
		}
		er := readEvents(resp.Body)
		var p sessionPayload
		if ev := er.next(t, false); ev.Type != "session" || json.Unmarshal([]byte(ev.Data), &p) != nil {
			t.Fatalf("first %+v", ev)
		}
		return er, p
	}
	er, sess := open(ts1.URL, "")
	er.next(t, false) // pods' snapshot
	if r := postJSON(t, ts1.URL+"/api/v1/stream/mux/"+sess.Session+"/subscriptions", "tok-alice", `{"name":"ev","path":"namespaces/shop/events"}`); r.StatusCode != 201 {
		t.Fatalf("add: %d", r.StatusCode)
	}
	last := er.next(t, false)
	if last.Type != "ev" || !strings.HasPrefix(last.ID, session.IDPrefix) {
		t.Fatalf("added subscription's first event %+v", last)
	}
	// The other router knows nothing of the session yet.
	if r := postJSON(t, ts2.URL+"/api/v1/stream/mux/"+sess.Session+"/subscriptions", "tok-alice", `{"name":"x","path":"namespaces/shop/pods"}`); r.StatusCode != 404 {
		t.Fatalf("POST to another router: %d, want 404", r.StatusCode)
	}

	er2, sess2 := open(ts2.URL, last.ID)
	if !sess2.Resumed || sess2.Session != sess.Session || len(sess2.Subscriptions) != 2 || sess2.Subscriptions[1] != (SubscriptionRequest{Name: "ev", Path: "namespaces/shop/events"}) {
		t.Fatalf("resumed on another router: %+v", sess2)
	}
	// Nothing was missed: the next events are the next changes of each subscription.
	kc := f.kube.CoreV1()
	if _, err := kc.Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.Events("shop").Create(context.Background(), &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A subscription whose topic is new on this router may first get the topic's
	// snapshot: the state at the topic's list, which holds whatever it missed (and the
	// new object too, when the list came after it); what follows are the changes.
	want := map[string]string{"pods": "web-2", "ev": `"e1"`}
	got := map[string]string{}
	for len(got) < len(want) {
		ev := er2.next(t, false)
		name, ok := want[ev.Type]
		if !ok {
			t.Fatalf("unexpected event %+v", ev)
		}
		if prev, seen := got[ev.Type]; seen {
			t.Fatalf("%s: %s after %s", ev.Type, ev.Data, prev)
		}
		snapshot := strings.Contains(ev.Data, `"type":"snapshot"`)
		switch {
		case snapshot && !strings.Contains(ev.Data, name):
			continue // the state before the change, which follows
		case !snapshot && !strings.Contains(ev.Data, `"ADDED"`):
			t.Fatalf("%s: %s, want the new object added", ev.Type, ev.Data)
		case !strings.Contains(ev.Data, name):
			t.Fatalf("%s: %s, want %s", ev.Type, ev.Data, name)
		}
		got[ev.Type] = ev.Data
	}
	if r := postJSON(t, ts2.URL+"/api/v1/stream/mux/"+sess.Session+"/subscriptions", "tok-alice", `{"name":"p2","path":"namespaces/shop/pods"}`); r.StatusCode != 201 {
		t.Fatalf("POST to the router now serving the session: %d", r.StatusCode)
	}

	// Alice lost the events: resuming elsewhere ends that subscription alone.
	f.deny("alice", "shop", "list events")
	_, ts3 := startServer(t, testConfig(), f)
	er3, sess3 := open(ts3.URL, last.ID)
	if len(sess3.Subscriptions) != 1 || sess3.Subscriptions[0].Name != "pods" {
		t.Fatalf("session without the revoked subscription: %+v", sess3)
	}
	ev := er3.next(t, false)
	if p := errorPayload(t, ev); ev.Type != "ev" || p.Status != 403 || p.Code != api.CodeForbidden {
		t.Fatalf("the revoked subscription's end: %+v", ev)
	}
}

func TestMuxRefusesBadIDs(t *testing.T) {
	f := newFakeCluster()
	f.allow("alice", "shop", "list pods", "watch pods")
	_, ts := startServer(t, testConfig(), f)
	u := ts.URL + "/api/v1/stream/mux?" + url.Values{"subscribe": {"pods:namespaces/shop/pods"}}.Encode()
	carried := session.FormatID("AAAAAAAAAAAAAAAAAAAAAA", []session.Entry{{Name: "x", Carried: true, Path: "namespaces/shop/nothing"}})
	for _, id := range []string{"garbage", "m1.AAAA", session.IDPrefix + strings.Repeat("A", 9000), carried} {
		resp := openStream(t, u, "tok-alice", "Last-Event-ID: "+id)
		if resp.StatusCode != 400 {
			t.Errorf("%.40s: %d, want 400", id, resp.StatusCode)
		}
	}
	// An id of the former format starts afresh.
	resp := openStream(t, u, "tok-alice", "Last-Event-ID: AAAAAAAAAAAAAAAAAAAAAA.12")
	var p sessionPayload
	if ev := readEvents(resp.Body).next(t, false); resp.StatusCode != 200 || json.Unmarshal([]byte(ev.Data), &p) != nil || p.Resumed {
		t.Fatalf("former id: %d %+v", resp.StatusCode, ev)
	}
}
