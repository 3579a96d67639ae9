package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// router is an SSE router running in the test, reading the control plane with the
// admin's credentials (as the router does with its own ServiceAccount).
type router struct {
	URL    string
	srv    *server.Server
	prefix string // Redis key prefix of its app summaries
	rdb    *redis.Client
}

func routerConfig() server.Config {
	return server.Config{
		Heartbeat: 15 * time.Second, Retry: time.Second, Linger: 10 * time.Second, QueueSize: 256,
		WriteTimeout: 5 * time.Second, WatchReplay: 1000, LogReplay: 1000, WorkflowLogReplay: 10000,
		MetricsInterval: 5 * time.Second, AuthCacheTTL: 2 * time.Second, AppLabel: "app",
		TokenCookie: "dwp_token", MaxSubscriptions: 8, ShutdownTimeout: 5 * time.Second,
		ArgoCDNamespace: "argocd",
	}
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startRouter serves a router for env until the test ends.
func startRouter(t *testing.T, env *clustertest.Env, tune func(*server.Config)) *router {
	t.Helper()
	cfg := routerConfig()
	if tune != nil {
		tune(&cfg)
	}
	clusters, err := kube.Load(kube.Options{Kubeconfig: env.Kubeconfig, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	r := &router{prefix: "dwp-test-" + randomSuffix() + ":"}
	r.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { r.rdb.Close() })
	apps := upstream.NewSummaryApps(r.rdb, r.prefix, map[string]string{clusters.Default().Name: env.ClusterName})
	level := slog.LevelWarn
	if os.Getenv("DWP_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(cfg, server.Deps{Clusters: clusters, Apps: apps, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Error("router did not stop")
		}
	})
	r.URL = "http://" + ln.Addr().String()
	r.srv = srv
	return r
}

// metric reads one sample from the router's /metrics, e.g.
// metric(t, `dwp_sse_upstreams{kind="pod_log"}`); absent samples read 0.
func (r *router) metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get(r.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// client is one stream reader, as a browser's EventSource.
type client struct {
	resp   *http.Response
	reader *sse.Reader
	events chan sse.Event
	cancel context.CancelFunc
}

// open opens a stream (path under /api/v1/stream/) as the holder of token.
func (r *router) open(t *testing.T, path, token, lastEventID string) *client {
	t.Helper()
	c, status := r.tryOpen(t, path, token, lastEventID)
	if status != http.StatusOK {
		t.Fatalf("open %s: status %d", path, status)
	}
	return c
}

func (r *router) tryOpen(t *testing.T, path, token, lastEventID string) (*client, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/api/v1/stream/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode
	}
	c := &client{resp: resp, reader: sse.NewReader(resp.Body), events: make(chan sse.Event, 100000), cancel: cancel}
	go func() {
		defer close(c.events)
		for {
			ev, err := c.reader.Next()
			if err != nil {
				return
			}
			c.events <- ev
		}
	}()
	t.Cleanup(c.close)
	return c, resp.StatusCode
}

func (c *client) close() {
	c.cancel()
	c.resp.Body.Close()
}

// next returns the next event (comments skipped) within timeout.
func (c *client) next(t *testing.T, timeout time.Duration) sse.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatal("stream closed")
			}
			if ev.IsComment {
				continue
			}
			return ev
		case <-deadline:
			t.Fatalf("no event within %s", timeout)
		}
	}
}

// until reads events until done says so, failing after timeout.
func (c *client) until(t *testing.T, timeout time.Duration, what string, done func(sse.Event) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("stream closed while waiting for %s", what)
			}
			if !ev.IsComment && done(ev) {
				return
			}
		case <-deadline:
			t.Fatalf("no %s within %s", what, timeout)
		}
	}
}

// runningPod creates a pod of app in ns (on kwok's node) and waits until it runs.
func runningPod(t *testing.T, env *clustertest.Env, ns, name, app string) *corev1.Pod {
	t.Helper()
	cs := env.AdminClientset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:   env.NodeName,
			Containers: []corev1.Container{{Name: "main", Image: "registry.example/" + app + ":1"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for p.Status.Phase != corev1.PodRunning {
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s not running: %s", ns, name, p.Status.Phase)
		case <-time.After(200 * time.Millisecond):
		}
		if p, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// label sets a label of a pod (a change every pod stream shows).
func label(t *testing.T, env *clustertest.Env, ns, pod, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, key, value)
	for {
		_, err := env.AdminClientset(t).CoreV1().Pods(ns).Patch(ctx, pod, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{})
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("label %s/%s: %v", ns, pod, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func appendLines(t *testing.T, pl *clustertest.PodLog, prefix string, from, n int) []string {
	t.Helper()
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("%s %04d", prefix, from+i)
	}
	if _, err := pl.Append(lines...); err != nil {
		t.Fatal(err)
	}
	return lines
}
