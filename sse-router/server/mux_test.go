package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

func TestValidName(t *testing.T) {
	for _, ok := range []string{"pods", "p1", "log.web-1", "A_b"} {
		if err := validName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1pods", "a b", "a:b", "session", "error", "reconnect", "message", strings.Repeat("a", 65), "é"} {
		if validName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseSubscriptionBody(t *testing.T) {
	tests := []struct {
		body      string
		wantKind  api.Kind
		wantField string
	}{
		{`{"name":"pods","path":"namespaces/shop/pods?app=web"}`, api.KindPods, ""},
		{`{"name":"log","path":"/api/v1/stream/clusters/c/namespaces/shop/pods/p/log?tailLines=5"}`, api.KindPodLog, ""},
		{`{"name":"pods","path":"namespaces/shop/pods","extra":1}`, "", "body"},
		{`{"name":"pods","path":"namespaces/shop/pods"} {}`, "", "body"},
		{`[1]`, "", "body"},
		{`{"name":"session","path":"namespaces/shop/pods"}`, "", "name"},
		{`{"name":"x","path":"https://elsewhere/namespaces/shop/pods"}`, "", "path"},
		{`{"name":"x","path":"namespaces/shop/pods?lastEventId=5"}`, "", "path: lastEventId"},
		{`{"name":"x","path":"namespaces/shop/pods?app="}`, "", "path: app"},
		{`{"name":"x","path":"namespaces/shop/nothing"}`, "", "path: path"},
	}
	for _, tt := range tests {
		_, spec, err := parseSubscriptionBody([]byte(tt.body), "app")
		if tt.wantField == "" {
			if err != nil || spec.Kind != tt.wantKind {
				t.Errorf("%s: %v %v", tt.body, spec.Kind, err)
			}
			continue
		}
		var se *api.SpecError
		if !errors.As(err, &se) || se.Field != tt.wantField {
			t.Errorf("%s: err %v, want a problem with %q", tt.body, err, tt.wantField)
		}
	}
}

func FuzzParseSubscriptionBody(f *testing.F) {
	f.Add([]byte(`{"name":"pods","path":"namespaces/shop/pods?app=web"}`))
	f.Add([]byte(`{"name":"l","path":"namespaces/a/pods/p/log?sinceTime=2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"name":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, spec, err := parseSubscriptionBody(body, "app")
		if err != nil {
			var se *api.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error of another type: %v", err)
			}
			return
		}
		if validName(req.Name) != nil || spec.Namespace == "" {
			t.Fatalf("accepted %+v %+v", req, spec)
		}
	})
}

func FuzzParseQuerySubscription(f *testing.F) {
	f.Add("pods:namespaces/shop/pods?app=web")
	f.Add("l:clusters/x/namespaces/a/pods/p/log")
	f.Add(":")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, v string) {
		req, spec, err := parseQuerySubscription(v, "app")
		if err == nil && (validName(req.Name) != nil || spec.Kind == "") {
			t.Fatalf("accepted %q as %+v", v, req)
		}
	})
}

func TestParseMuxID(t *testing.T) {
	id := newSessionID()
	if s, seq, err := parseMuxID(id + ".42"); err != nil || s != id || seq != 42 {
		t.Fatalf("%q: %q %d %v", id+".42", s, seq, err)
	}
	for _, bad := range []string{"", "42", id, id + ".", id + ".x", id + ".-1", id + ".+1", "short.1", id[:21] + "!.1"} {
		if _, _, err := parseMuxID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseMuxID(f *testing.F) {
	f.Add(newSessionID() + ".7")
	f.Add("x.y")
	f.Fuzz(func(t *testing.T, id string) {
		s, seq, err := parseMuxID(id)
		if err != nil {
			return
		}
		rest := strings.TrimLeft(strings.TrimPrefix(id, s+"."), "0")
		if len(s) != sessionIDLen || rest != strings.TrimLeft(strconv.FormatUint(seq, 10), "0") {
			t.Fatalf("%q parsed as %q %d", id, s, seq)
		}
	})
}

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

	// Reconnecting with the last id resumes the session: exactly the missed change.
	resp2 := openStream(t, base+"?"+q.Encode(), "tok-alice", "Last-Event-ID: "+seen.ID)
	er2 := readEvents(resp2.Body)
	first = er2.next(t, false)
	if err := json.Unmarshal([]byte(first.Data), &sess); err != nil || !sess.Resumed {
		t.Fatalf("reconnect: %+v", first)
	}
	// The fake API server gives objects no resourceVersion, so positions cannot be
	// compared: each subscription gets its current state again (exact resumption is
	// shown against a real API server in the integration tests).
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
	if err := json.Unmarshal([]byte(er3.next(t, false).Data), &other); err != nil || other.Resumed || other.Session == sess.Session {
		t.Fatalf("bob's session %+v", other)
	}
}
