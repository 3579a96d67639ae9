package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"

	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// fakeCluster is a cluster whose API server is client-go's fake: tokens "tok-<user>"
// authenticate as <user>; a user may do what allowed lists ("user verb resource ns").
type fakeCluster struct {
	kube *fake.Clientset

	mu      sync.Mutex // reviews run on the server's goroutines
	allowed map[string]bool
	revoked map[string]bool // tokens no longer accepted
}

func newFakeCluster(objects ...runtime.Object) *fakeCluster {
	f := &fakeCluster{kube: fake.NewClientset(objects...), allowed: map[string]bool{}, revoked: map[string]bool{}}
	f.kube.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		f.mu.Lock()
		defer f.mu.Unlock()
		if user, ok := strings.CutPrefix(tr.Spec.Token, "tok-"); ok && !f.revoked[tr.Spec.Token] {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: user, UID: "uid-" + user}}
		}
		return true, tr, nil
	})
	f.kube.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		ra := sar.Spec.ResourceAttributes
		res := ra.Resource
		if ra.Subresource != "" {
			res += "/" + ra.Subresource
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		sar.Status.Allowed = f.allowed[sar.Spec.User+" "+ra.Verb+" "+res+" "+ra.Namespace] || sar.Spec.User == "admin"
		return true, sar, nil
	})
	return f
}

func (f *fakeCluster) allow(user, ns string, verbResources ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, vr := range verbResources {
		f.allowed[user+" "+vr+" "+ns] = true
	}
}

func (f *fakeCluster) deny(user, ns string, verbResources ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, vr := range verbResources {
		delete(f.allowed, user+" "+vr+" "+ns)
	}
}

func (f *fakeCluster) revoke(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[token] = true
}

func testConfig() Config {
	return Config{
		Heartbeat: time.Hour, Retry: 1500 * time.Millisecond, Linger: 200 * time.Millisecond,
		QueueSize: 64, WriteTimeout: 2 * time.Second, WatchReplay: 100, LogReplay: 100, WorkflowLogReplay: 100,
		MetricsInterval: time.Hour, AuthCacheTTL: time.Second, AppLabel: "app", TokenCookie: "dwp_token", MaxSubscriptions: 4,
	}
}

// startServer serves a router over f on an httptest server.
func startServer(t testing.TB, cfg Config, f *fakeCluster) (*Server, *httptest.Server) {
	t.Helper()
	c := &kube.Cluster{Name: "local", Kubernetes: f.kube, Argo: argofake.NewSimpleClientset(), Metrics: metricsfake.NewSimpleClientset()}
	clusters, err := kube.NewClusters("local", c)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Deps{Clusters: clusters, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		ts.Close()
	})
	return s, ts
}

// openStream opens a stream with a token (and extra headers as "Name: value").
func openStream(t *testing.T, url, token string, headers ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// events reads events (not comments) from a stream in the background.
type eventReader struct {
	r  *sse.Reader
	ch chan sse.Event
}

func readEvents(body io.Reader) *eventReader {
	er := &eventReader{r: sse.NewReader(bufio.NewReader(body)), ch: make(chan sse.Event, 1000)}
	go func() {
		defer close(er.ch)
		for {
			ev, err := er.r.Next()
			if err != nil {
				return
			}
			er.ch <- ev
		}
	}()
	return er
}

// next returns the next event, skipping comments unless wantComment.
func (er *eventReader) next(t *testing.T, wantComment bool) sse.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-er.ch:
			if !ok {
				t.Fatal("stream ended")
			}
			if ev.IsComment != wantComment {
				continue
			}
			return ev
		case <-timeout:
			t.Fatal("no event within 5s")
		}
	}
}
