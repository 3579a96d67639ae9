package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"

	"github.com/dwp-sre/dwp-sre/internal/cors"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

func reauthConfig() Config {
	cfg := testConfig()
	cfg.AuthCacheTTL = 200 * time.Millisecond
	cfg.ReauthorizeInterval = time.Second
	return cfg
}

// ended waits for the stream's end, failing on any event but comments.
func (er *eventReader) ended(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-er.ch:
			if !ok {
				return
			}
			if !ev.IsComment {
				t.Fatalf("event after the end: %+v", ev)
			}
		case <-deadline:
			t.Fatalf("stream still open after %s", within)
		}
	}
}

// nextWithin returns the next event (not a comment) within d.
func (er *eventReader) nextWithin(t *testing.T, d time.Duration) sse.Event {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case ev, ok := <-er.ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if !ev.IsComment {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event within %s", d)
		}
	}
}

func errorPayload(t *testing.T, ev sse.Event) api.ErrorPayload {
	t.Helper()
	var p api.ErrorPayload
	if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
		t.Fatalf("%+v: %v", ev, err)
	}
	return p
}

func TestRevokedRightsEndStreams(t *testing.T) {
	f := newFakeCluster(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"}})
	for _, u := range []string{"alice", "bob"} {
		f.allow(u, "shop", "list pods", "watch pods", "get pods/log")
	}
	cfg := reauthConfig()
	_, ts := startServer(t, cfg, f)
	alice := readEvents(openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-alice").Body)
	bob := readEvents(openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-bob").Body)
	for _, er := range []*eventReader{alice, bob} {
		if ev := er.next(t, false); ev.Type != "snapshot" {
			t.Fatalf("first %+v", ev)
		}
	}

	f.deny("alice", "shop", "list pods")
	revokedAt := time.Now()
	ev := alice.nextWithin(t, cfg.ReauthorizeInterval+500*time.Millisecond)
	took := time.Since(revokedAt)
	p := errorPayload(t, ev)
	if ev.Type != "error" || p.Status != 403 || p.Code != api.CodeForbidden || p.Retrying || !strings.Contains(p.Message, `user "alice" may not list pods in namespace "shop"`) {
		t.Fatalf("final event %+v", ev)
	}
	if took > cfg.ReauthorizeInterval {
		t.Errorf("ended %s after the revocation, interval %s", took, cfg.ReauthorizeInterval)
	}
	t.Logf("alice's stream ended %s after the revocation", took)
	alice.ended(t, time.Second)

	// A blind reconnect is refused before the stream starts: EventSource stops.
	if resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-alice"); resp.StatusCode != 403 {
		t.Fatalf("reconnect: %d", resp.StatusCode)
	}
	// Bob's stream goes on.
	if _, err := f.kube.CoreV1().Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := bob.nextWithin(t, 2*time.Second); ev.Type != "added" {
		t.Fatalf("bob got %+v", ev)
	}

	// A revoked token ends the stream the same way, with 401.
	f.revoke("tok-bob")
	ev = bob.nextWithin(t, cfg.ReauthorizeInterval+500*time.Millisecond)
	if p := errorPayload(t, ev); ev.Type != "error" || p.Status != 401 || p.Code != api.CodeUnauthenticated {
		t.Fatalf("bob's final event %+v", ev)
	}
	bob.ended(t, time.Second)
}

func TestRevokedSubscriptionEndsAlone(t *testing.T) {
	f := newFakeCluster(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop"}})
	f.allow("alice", "shop", "list pods", "watch pods", "list events", "watch events")
	f.allow("alice", "bank", "list pods", "watch pods")
	cfg := reauthConfig()
	_, ts := startServer(t, cfg, f)
	q := url.Values{"subscribe": {"shop:namespaces/shop/pods", "bank:namespaces/bank/pods", "ev:namespaces/shop/events"}}
	er := readEvents(openStream(t, ts.URL+"/api/v1/stream/mux?"+q.Encode(), "tok-alice").Body)
	if ev := er.next(t, false); ev.Type != "session" {
		t.Fatalf("first %+v", ev)
	}
	for range 3 {
		er.next(t, false)
	}
	f.deny("alice", "bank", "list pods")
	revokedAt := time.Now()
	ev := er.nextWithin(t, cfg.ReauthorizeInterval+500*time.Millisecond)
	p := errorPayload(t, ev)
	if ev.Type != "bank" || p.Type != "error" || p.Status != 403 || p.Code != api.CodeForbidden {
		t.Fatalf("revoked subscription's event %+v", ev)
	}
	t.Logf("subscription ended %s after the revocation", time.Since(revokedAt))
	// The others go on.
	if _, err := f.kube.CoreV1().Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Namespace: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.kube.CoreV1().Pods("bank").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "vault", Namespace: "bank"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ev := er.nextWithin(t, 2*time.Second); ev.Type != "shop" || !strings.Contains(ev.Data, "web-2") {
		t.Fatalf("after the revocation: %+v", ev)
	}
	select {
	case ev := <-er.ch:
		if !ev.IsComment {
			t.Fatalf("revoked subscription still delivers: %+v", ev)
		}
	case <-time.After(300 * time.Millisecond):
	}

	// A rejected token ends the connection: a connection-level error, then the end.
	f.revoke("tok-alice")
	ev = er.nextWithin(t, cfg.ReauthorizeInterval+500*time.Millisecond)
	if p := errorPayload(t, ev); ev.Type != "error" || p.Status != 401 || p.Code != api.CodeUnauthenticated {
		t.Fatalf("final event %+v", ev)
	}
	er.ended(t, time.Second)
}

func TestMaxStreamLifetime(t *testing.T) {
	f := newFakeCluster()
	cfg := reauthConfig()
	cfg.MaxStreamLifetime = 100 * time.Millisecond
	_, ts := startServer(t, cfg, f)
	er := readEvents(openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-admin").Body)
	er.next(t, false)
	ev := er.nextWithin(t, cfg.ReauthorizeInterval+500*time.Millisecond)
	if ev.Type != EventReconnect || !strings.Contains(ev.Data, `"reason":"lifetime"`) {
		t.Fatalf("final event %+v", ev)
	}
	er.ended(t, time.Second)
}

func TestReauthorizeIntervalMustExceedCacheTTL(t *testing.T) {
	cfg := testConfig()
	cfg.ReauthorizeInterval = cfg.AuthCacheTTL
	clusters, err := kube.NewClusters("local", &kube.Cluster{Name: "local", Kubernetes: newFakeCluster().kube})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, Deps{Clusters: clusters}); err == nil || !strings.Contains(err.Error(), "must exceed the auth cache TTL") {
		t.Fatalf("accepted: %v", err)
	}
}

func TestTokenExpiry(t *testing.T) {
	jwt := func(claims string) string {
		return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
	}
	for tok, want := range map[string]int64{
		jwt(`{"exp":1900000000,"sub":"x"}`): 1900000000,
		jwt(`{"exp":1.9e9}`):                1900000000,
		jwt(`{"sub":"x"}`):                  0,
		jwt(`{"exp":"soon"}`):               0,
		"tok-alice":                         0,
		"a.b.c":                             0,
	} {
		got := tokenExpiry(tok)
		if want == 0 && !got.IsZero() || want != 0 && got.Unix() != want {
			t.Errorf("%s: %v, want %d", tok, got, want)
		}
	}
}

// The wheel checks every stream once per period, however many there are, with one
// goroutine (and a few workers while it checks).
func TestRecheckerVisitsEachStreamOncePerPeriod(t *testing.T) {
	r := newRechecker(200 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	var mu sync.Mutex
	counts := make([]int, 500)
	var ws []*watched
	for i := range counts {
		ws = append(ws, r.add(func(context.Context) { mu.Lock(); counts[i]++; mu.Unlock() }))
	}
	time.Sleep(1050 * time.Millisecond)
	for _, w := range ws[:250] {
		r.remove(w)
	}
	mu.Lock()
	for i, c := range counts {
		if c < 4 || c > 6 {
			t.Errorf("stream %d checked %d times in 5 periods", i, c)
			break
		}
	}
	before := counts[0]
	mu.Unlock()
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if counts[0] != before {
		t.Error("a removed stream is still checked")
	}
}

// FuzzStreamAPI sends any method, path, origin and token to the router: a foreign origin
// is always refused before anything else, no request without a token gets a stream, and
// nothing answers a 5xx but 501 (not configured) or 503.
func FuzzStreamAPI(f *testing.F) {
	fc := newFakeCluster()
	fc.allow("alice", "shop", "list pods", "watch pods", "get pods/log")
	cfg := testConfig()
	cfg.CORSOrigins = []string{"https://portal.example"}
	clusters, err := kube.NewClusters("local", &kube.Cluster{Name: "local", Kubernetes: fc.kube, Argo: argofake.NewSimpleClientset(), Metrics: metricsfake.NewSimpleClientset()})
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(cfg, Deps{Clusters: clusters, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Add("GET", "/api/v1/stream/namespaces/shop/pods", "", "tok-alice")
	f.Add("GET", "/api/v1/stream/namespaces/shop/pods", "https://evil.example", "tok-alice")
	f.Add("POST", "/api/v1/stream/mux/x/subscriptions", "https://portal.example", "tok-alice")
	f.Add("GET", "/api/v1/stream/mux?subscribe=p:namespaces/shop/pods", "null", "")
	f.Add("GET", "/api/v1/stream/namespaces/shop/archived-workflows/u/nodes/n/log", "", "tok-alice")
	f.Add("GET", "/api/v1/stream/namespaces/shop/apps", "", "tok-admin")
	f.Add("OPTIONS", "/api/v1/stream/namespaces/shop/pods", "https://portal.example", "")
	f.Fuzz(func(t *testing.T, method, path, origin, token string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n#") || strings.ContainsAny(origin+token, "\r\n\x00") {
			return
		}
		if _, err := url.ParseRequestURI(path); err != nil {
			return // not a request a server can receive
		}
		switch method {
		case "GET", "POST", "DELETE", "OPTIONS", "PUT":
		default:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, method, "http://router.local"+path, strings.NewReader(`{"name":"p","path":"namespaces/shop/pods"}`))
		req.Header.Set("Content-Type", "application/json")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "GET")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		foreign := origin != "" && origin != "https://portal.example" && !cors.SameOrigin(origin, req)
		switch {
		case foreign && (rec.Code != 403 || rec.Header().Get("Content-Type") != problem.ContentType):
			t.Fatalf("%s %s from %q: %d", method, path, origin, rec.Code)
		case token == "" && rec.Code == 200 && strings.HasPrefix(path, "/api/"):
			t.Fatalf("%s %s without a token: 200", method, path)
		case rec.Code >= 500 && rec.Code != 501 && rec.Code != 503:
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
	})
}

// A resumed session's subscriptions are checked as it resumes, not a period later: one
// added by POST is not in the reconnecting URL.
func TestResumedSessionIsCheckedAtOnce(t *testing.T) {
	f := newFakeCluster()
	f.allow("alice", "shop", "list pods", "watch pods")
	f.allow("alice", "bank", "list pods", "watch pods")
	cfg := reauthConfig()
	cfg.ReauthorizeInterval = 10 * time.Second
	cfg.Linger = 5 * time.Second
	_, ts := startServer(t, cfg, f)
	u := ts.URL + "/api/v1/stream/mux?" + url.Values{"subscribe": {"shop:namespaces/shop/pods"}}.Encode()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer tok-alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	er := readEvents(resp.Body)
	var sess sessionPayload
	if err := json.Unmarshal([]byte(er.next(t, false).Data), &sess); err != nil {
		t.Fatal(err)
	}
	er.next(t, false) // shop's snapshot
	if r := postJSON(t, ts.URL+"/api/v1/stream/mux/"+sess.Session+"/subscriptions", "tok-alice", `{"name":"bank","path":"namespaces/bank/pods"}`); r.StatusCode != 201 {
		t.Fatalf("add: %d", r.StatusCode)
	}
	last := er.next(t, false) // bank's snapshot
	cancel()
	resp.Body.Close()

	f.deny("alice", "bank", "list pods")
	time.Sleep(cfg.AuthCacheTTL + 100*time.Millisecond)
	er = readEvents(openStream(t, u, "tok-alice", "Last-Event-ID: "+last.ID).Body)
	if ev := er.next(t, false); ev.Type != "session" || !strings.Contains(ev.Data, `"resumed":true`) {
		t.Fatalf("first %+v", ev)
	}
	ev := er.nextWithin(t, time.Second)
	if p := errorPayload(t, ev); ev.Type != "bank" || p.Status != 403 || p.Code != api.CodeForbidden {
		t.Fatalf("resumed session's revoked subscription: %+v", ev)
	}
}

// BenchmarkRecheck20k is one full turn of the wheel over 20k streams of 200 users, with
// the reviews cached (what a turn costs once the cache is warm).
func BenchmarkRecheck20k(b *testing.B) {
	f := newFakeCluster()
	cfg := testConfig()
	cfg.AuthCacheTTL = time.Hour
	cfg.ReauthorizeInterval = 2 * time.Hour
	clusters, err := kube.NewClusters("local", &kube.Cluster{Name: "local", Kubernetes: f.kube, Argo: argofake.NewSimpleClientset(), Metrics: metricsfake.NewSimpleClientset()})
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(cfg, Deps{Clusters: clusters, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	rv, _ := s.reviewer("local")
	spec, err := api.ParseSpec("namespaces/shop/pods", url.Values{}, "app")
	if err != nil {
		b.Fatal(err)
	}
	actions := spec.Actions()
	checks := make([]func(context.Context), 20000)
	for i := range checks {
		g := newGrant("tok-user" + strconv.Itoa(i%200))
		checks[i] = func(ctx context.Context) {
			if _, end := s.recheck(ctx, g, rv, actions...); end {
				b.Error("revoked")
			}
		}
	}
	for i := range 200 {
		f.allow("user"+strconv.Itoa(i), "shop", "list pods", "watch pods")
	}
	runChecks(context.Background(), checks) // warm the cache
	b.ResetTimer()
	for b.Loop() {
		runChecks(context.Background(), checks)
	}
}
