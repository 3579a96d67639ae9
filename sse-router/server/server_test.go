package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

func TestLoadConfig(t *testing.T) {
	env := map[string]string{
		"DWP_HEARTBEAT_INTERVAL": "5s",
		"DWP_CORS_ORIGINS":       "https://portal.example, http://localhost:3000/",
		"DWP_QUEUE_SIZE":         "16",
	}
	c, err := LoadConfig([]string{"-queue-size", "32", "-listen-address", ":9000"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Heartbeat != 5*time.Second || c.QueueSize != 32 || c.ListenAddress != ":9000" || c.Linger != 30*time.Second || c.TokenCookie != "dwp_token" {
		t.Fatalf("config %+v", c)
	}
	if strings.Join(c.CORSOrigins, " ") != "https://portal.example http://localhost:3000" {
		t.Fatalf("origins %q", c.CORSOrigins)
	}
	if c.Redis.Addr != "127.0.0.1:6379" || c.Redis.Prefix != "dwp:" || c.AppLabel != "app" || c.ArgoCDNamespace != "argocd" {
		t.Fatalf("defaults %+v", c)
	}

	bad := []map[string]string{
		{"DWP_HEARTBEAT_INTERVAL": "often"},
		{"DWP_QUEUE_SIZE": "0"},
		{"DWP_CORS_ORIGINS": "*"},
		{"DWP_LOG_LEVEL": "loud"},
		{"DWP_ARGO_SERVER_INSECURE_SKIP_VERIFY": "perhaps"},
		{"DWP_KUBE_QPS": "-1"},
		{"DWP_ARGOCD_NAMESPACE": "Argo CD"},
	}
	for _, b := range bad {
		if _, err := LoadConfig(nil, func(k string) string { return b[k] }, io.Discard); err == nil {
			t.Errorf("%v accepted", b)
		}
	}
}

func FuzzLoadConfig(f *testing.F) {
	f.Add("DWP_LINGER", "30s")
	f.Add("DWP_CORS_ORIGINS", "https://a,https://b")
	f.Add("DWP_QUEUE_SIZE", "-3")
	f.Fuzz(func(t *testing.T, name, value string) {
		c, err := LoadConfig(nil, func(k string) string {
			if k == name {
				return value
			}
			return ""
		}, io.Discard)
		if err == nil && (c.QueueSize < 1 || c.Heartbeat < 0 || c.ListenAddress == "" && name != "DWP_LISTEN_ADDRESS") {
			t.Fatalf("accepted an unusable config %+v", c)
		}
	})
}

func TestStreamRefusals(t *testing.T) {
	f := newFakeCluster()
	f.allow("alice", "shop", "list pods", "watch pods", "get workflows")
	_, ts := startServer(t, testConfig(), f)

	tests := []struct {
		name    string
		method  string
		path    string
		token   string
		headers []string
		status  int
		detail  string
	}{
		{"no token", "GET", "/api/v1/stream/namespaces/shop/pods", "", nil, 401, "no bearer token"},
		{"bad token", "GET", "/api/v1/stream/namespaces/shop/pods", "nope", nil, 401, "not accepted"},
		{"no rights in namespace", "GET", "/api/v1/stream/namespaces/bank/pods", "tok-alice", nil, 403, `may not list pods in namespace "bank"`},
		{"no rights for logs", "GET", "/api/v1/stream/namespaces/shop/pods/p/log", "tok-alice", nil, 403, "pods/log"},
		{"unknown stream", "GET", "/api/v1/stream/namespaces/shop/secrets", "tok-alice", nil, 404, "no stream"},
		{"unknown cluster", "GET", "/api/v1/stream/clusters/mars/namespaces/shop/pods", "tok-alice", nil, 404, "mars"},
		{"bad parameter", "GET", "/api/v1/stream/namespaces/shop/pods?app=", "tok-alice", nil, 400, "invalid stream request"},
		{"token in the URL is not read", "GET", "/api/v1/stream/namespaces/shop/pods?token=tok-alice", "", nil, 400, "invalid stream request"},
		{"bad Last-Event-ID", "GET", "/api/v1/stream/namespaces/shop/pods/p/log", "tok-admin", []string{"Last-Event-ID: yesterday"}, 400, "invalid stream request"},
		{"wrong method", "PUT", "/api/v1/stream/namespaces/shop/pods", "tok-alice", nil, 405, "not allowed"},
		{"nothing there", "GET", "/elsewhere", "", nil, 404, "nothing at"},
		{"apps without Redis", "GET", "/api/v1/stream/namespaces/shop/apps", "tok-admin", nil, 501, "not configured"},
		// Rights in Argo CD's namespace do not count: those on the app's pods do.
		{"application without rights on the app", "GET", "/api/v1/stream/namespaces/bank/apps/web/application", "tok-alice", nil, 403, `may not list pods in namespace "bank"`},
		{"application without Argo CD", "GET", "/api/v1/stream/namespaces/shop/apps/web/application", "tok-alice", nil, 501, "Argo CD's namespace is not configured"},
		{"application of a bad app", "GET", "/api/v1/stream/namespaces/shop/apps/a.b/application", "tok-alice", nil, 400, "invalid stream request"},
		{"archived logs without argo-server", "GET", "/api/v1/stream/namespaces/shop/archived-workflows/u-1/nodes/n-1/log", "tok-alice", nil, 501, "DWP_ARGO_SERVER_URL"},
		{"archived logs need a token", "GET", "/api/v1/stream/namespaces/shop/archived-workflows/u-1/nodes/n-1/log", "", nil, 401, "no bearer token"},
		{"archived logs need rights on workflows", "GET", "/api/v1/stream/namespaces/bank/archived-workflows/u-1/nodes/n-1/log", "tok-alice", nil, 403, `may not get workflows.argoproj.io in namespace "bank"`},
		{"archived log bad namespace", "GET", "/api/v1/stream/namespaces/Shop/archived-workflows/u-1/nodes/n-1/log", "tok-alice", nil, 400, "invalid archived log request"},
		{"archived log bad node", "GET", "/api/v1/stream/namespaces/shop/archived-workflows/u-1/nodes/a%20b/log", "tok-alice", nil, 400, "invalid archived log request"},
		{"archived log bad uid", "GET", "/api/v1/stream/namespaces/shop/archived-workflows/..%2Fx/nodes/n-1/log", "tok-alice", nil, 404, "no stream"}, // an escaped slash never matches a route
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.URL+tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			for _, h := range tt.headers {
				k, v, _ := strings.Cut(h, ": ")
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, b, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != problem.ContentType {
				t.Fatalf("content type %q", ct)
			}
			var p problem.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.status || !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("problem %+v, want detail containing %q", p, tt.detail)
			}
		})
	}
}

func TestLastEventIDEndStopsReconnecting(t *testing.T) {
	_, ts := startServer(t, testConfig(), newFakeCluster())
	resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods/p/log", "tok-admin", "Last-Event-ID: end")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status %d, want 204", resp.StatusCode)
	}
}

func TestPodStream(t *testing.T) {
	f := newFakeCluster(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", Labels: map[string]string{"app": "web"}}})
	f.allow("alice", "shop", "list pods", "watch pods")
	cfg := testConfig()
	cfg.Heartbeat = 100 * time.Millisecond
	_, ts := startServer(t, cfg, f)

	// The cookie is how a browser's EventSource sends the token.
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/stream/namespaces/shop/pods?app=web", nil)
	req.AddCookie(&http.Cookie{Name: "dwp_token", Value: "tok-alice"})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream; charset=utf-8",
		"Cache-Control":     "no-cache, no-transform",
		"X-Accel-Buffering": "no",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.Error("stream is compressed")
	}
	er := readEvents(resp.Body)
	snap := er.next(t, false)
	if snap.Type != "snapshot" || !strings.Contains(snap.Data, `"web-1"`) || snap.Retry != 1500*time.Millisecond {
		t.Fatalf("first event %+v", snap)
	}
	if _, err := f.kube.CoreV1().Pods("shop").Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: "web-2", Namespace: "shop", Labels: map[string]string{"app": "web"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := er.next(t, false)
	if ev.Type != "added" || !strings.Contains(ev.Data, `"web-2"`) || !strings.Contains(ev.Data, `"type":"ADDED"`) {
		t.Fatalf("change %+v", ev)
	}
	if hb := er.next(t, true); hb.Comment != "keep-alive" {
		t.Fatalf("heartbeat %+v", hb)
	}
}

func TestCORS(t *testing.T) {
	cfg := testConfig()
	cfg.CORSOrigins = []string{"https://portal.example"}
	_, ts := startServer(t, cfg, newFakeCluster())

	pre := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, ts.URL+"/api/v1/stream/mux/x/subscriptions", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	ok := pre("https://portal.example")
	if ok.StatusCode != 204 || ok.Header.Get("Access-Control-Allow-Origin") != "https://portal.example" ||
		ok.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(ok.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("allowed preflight: %d %v", ok.StatusCode, ok.Header)
	}
	if bad := pre("https://evil.example"); bad.StatusCode != 403 || bad.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight: %d %v", bad.StatusCode, bad.Header)
	}
	resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-admin", "Origin: https://portal.example")
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "https://portal.example" || !strings.Contains(resp.Header.Get("Vary"), "Origin") {
		t.Fatalf("stream headers %d %v", resp.StatusCode, resp.Header)
	}
	// No Origin (curl, a same-origin GET): streamed, without CORS headers.
	if resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-admin"); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("without Origin: %d %v", resp.StatusCode, resp.Header)
	}
	// A page of a foreign origin is refused before anything is opened for it, whatever
	// the method, even with a valid cookie.
	for _, origin := range []string{"https://evil.example", "null", "https://portal.example.evil", "http://portal.example"} {
		for _, method := range []string{"GET", "POST", "DELETE"} {
			req, _ := http.NewRequest(method, ts.URL+"/api/v1/stream/namespaces/shop/pods", nil)
			req.Header.Set("Origin", origin)
			req.AddCookie(&http.Cookie{Name: "dwp_token", Value: "tok-admin"})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var p problem.Problem
			_ = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if resp.StatusCode != 403 || resp.Header.Get("Content-Type") != problem.ContentType ||
				resp.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(p.Detail, "DWP_CORS_ORIGINS") {
				t.Errorf("%s from %s: %d %v %+v", method, origin, resp.StatusCode, resp.Header, p)
			}
		}
	}
	// The router's own host is same-origin (a portal serving it under its host: browsers
	// send Origin with same-origin POSTs).
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/api/v1/stream/namespaces/shop/pods", nil)
	req.Header.Set("Origin", ts.URL)
	req.Header.Set("Authorization", "Bearer tok-admin")
	same, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	same.Body.Close()
	if same.StatusCode != 200 {
		t.Fatalf("same origin: %d", same.StatusCode)
	}
}

// An API server that cannot be asked is not described to browsers by its address.
func TestAccessCheckFailureHidesAddresses(t *testing.T) {
	f := newFakeCluster()
	f.kube.PrependReactor("create", "tokenreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(`Post "https://127.0.0.1:6443/apis/authentication.k8s.io/v1/tokenreviews": dial tcp 127.0.0.1:6443: connect: connection refused`)
	})
	_, ts := startServer(t, testConfig(), f)
	resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-alice")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "dial") {
		t.Fatalf("%d %v %s", resp.StatusCode, resp.Header, body)
	}
}

func TestArchivedLogProxy(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	argo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+" "+r.URL.Path)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok-alice" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized) // argo-server's answer to missing rights
			return
		}
		switch r.URL.Path {
		case "/api/v1/archived-workflows/0a1b-2c":
			_, _ = io.WriteString(w, `{"metadata":{"name":"build-x7","namespace":"shop"},"status":{"nodes":{
				"build-x7-123":{"outputs":{"artifacts":[{"name":"main-logs","s3":{"key":"build-x7/build-x7-123/main.log"}}]}},
				"build-x7-456":{}}}}`)
		case "/api/v1/archived-workflows/gone":
			http.Error(w, "Not Found", http.StatusNotFound)
		case "/artifact-files/shop/archived-workflows/0a1b-2c/build-x7-123/outputs/main-logs":
			w.Header().Set("Content-Type", "text/x-log")
			_, _ = io.WriteString(w, "step 1\nstep 2\n")
		default:
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		}
	}))
	defer argo.Close()
	cfg := testConfig()
	cfg.ArgoServerURL = argo.URL + "/"
	f := newFakeCluster()
	for _, u := range []string{"alice", "bob"} {
		f.allow(u, "shop", "get workflows")
	}
	_, ts := startServer(t, cfg, f)

	get := func(path, token string) (*http.Response, string) {
		resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/"+path, token)
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("shop/archived-workflows/0a1b-2c/nodes/build-x7-123/log", "tok-alice")
	if resp.StatusCode != 200 || body != "step 1\nstep 2\n" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
	mu.Lock()
	want := []string{
		"Bearer tok-alice /api/v1/archived-workflows/0a1b-2c",
		"Bearer tok-alice /artifact-files/shop/archived-workflows/0a1b-2c/build-x7-123/outputs/main-logs",
	}
	if !slices.Equal(seen, want) {
		t.Fatalf("argo-server saw %q, want %q", seen, want)
	}
	mu.Unlock()
	for _, c := range []struct {
		path, token string
		status      int
		detail      string
	}{
		{"shop/archived-workflows/0a1b-2c/nodes/missing/log", "tok-alice", 404, "has no node missing"},
		{"shop/archived-workflows/0a1b-2c/nodes/build-x7-456/log", "tok-alice", 404, "archived no log"},
		{"shop/archived-workflows/gone/nodes/build-x7-123/log", "tok-alice", 404, "no such archived workflow"},
		{"bank/archived-workflows/0a1b-2c/nodes/build-x7-123/log", "tok-alice", 403, "may not get"},
		// Allowed here, but argo-server refuses (it checks with bob's own token).
		{"shop/archived-workflows/0a1b-2c/nodes/build-x7-123/log", "tok-bob", 403, "argo-server refused"},
	} {
		resp, body := get(c.path, c.token)
		if resp.StatusCode != c.status || !strings.Contains(body, c.detail) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Errorf("%s as %s: %d %s", c.path, c.token, resp.StatusCode, body)
		}
	}
}

func TestShutdownTellsClientsToReconnect(t *testing.T) {
	s, ts := startServer(t, testConfig(), newFakeCluster())
	resp := openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-admin")
	er := readEvents(resp.Body)
	snap := er.next(t, false)
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	ev := er.next(t, false)
	if ev.Type != EventReconnect || ev.ID != snap.ID || ev.Retry < 1500*time.Millisecond || ev.Retry > 3000*time.Millisecond {
		t.Fatalf("final event %+v (after snapshot id %q)", ev, snap.ID)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// New streams are refused meanwhile.
	resp = openStream(t, ts.URL+"/api/v1/stream/namespaces/shop/pods", "tok-admin")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after shutdown: %d", resp.StatusCode)
	}
	if r := openStream(t, ts.URL+"/readyz", ""); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz after shutdown: %d", r.StatusCode)
	}
}

func TestWriterSaysWhyItCloses(t *testing.T) {
	cfg := testConfig()
	s, _ := startServer(t, cfg, newFakeCluster())
	tests := []struct {
		reason, wantType, wantData string
	}{
		{hub.ReasonSlow, "error", `"reason":"slow-client"`},
		{hub.ReasonReplaced, "error", `"reason":"replaced"`},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			c := hub.NewClient(4, s.metrics)
			sub := c.NewSubscription("")
			sub.Deliver(hub.NewMessage(false, hub.NewEvent("added", "41", []byte(`{"type":"ADDED"}`))))
			cw := s.startStream(rec, req, c, &plainFramer{lastID: "40"})
			// Let the writer drain the queued event, then close the client as the hub would.
			go func() {
				time.Sleep(50 * time.Millisecond)
				c.Close(tt.reason)
			}()
			cw.run(context.Background())
			r := sse.NewReader(strings.NewReader(rec.Body.String()))
			var last sse.Event
			for {
				ev, err := r.Next()
				if err != nil {
					break
				}
				last = ev
			}
			if last.Type != tt.wantType || !strings.Contains(last.Data, tt.wantData) || last.ID != "41" {
				t.Fatalf("last event %+v in %q", last, rec.Body.String())
			}
		})
	}
}

func TestEventWithoutPositionKeepsTheClientsID(t *testing.T) {
	f := &plainFramer{lastID: "40"}
	m := hub.NewMessage(false, hub.NewEvent("error", "", []byte(`{"type":"error"}`)))
	out, n, done := f.frame(nil, hub.Delivery{Msg: m})
	if n != 1 || done || !strings.Contains(string(out), "id: 40\n") {
		t.Fatalf("framed %q", out)
	}
	m = hub.NewMessage(false, hub.NewEvent("added", "41", []byte(`{}`)))
	if out, _, _ := f.frame(nil, hub.Delivery{Msg: m}); string(out) != string(m.Wire) || f.lastEventID() != "41" {
		t.Fatalf("shared bytes not written as they are: %q", out)
	}
}

func TestHealth(t *testing.T) {
	_, ts := startServer(t, testConfig(), newFakeCluster())
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp := openStream(t, ts.URL+p, "")
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
	}
}
