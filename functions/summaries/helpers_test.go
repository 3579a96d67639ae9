package summaries

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/julienschmidt/httprouter"
	"github.com/redis/go-redis/v9"
	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
)

// fakeAPIServer answers SelfSubjectAccessReviews: a token may list pods in the namespaces
// rights gives it; the token "expired" is not accepted.
type fakeAPIServer struct {
	*httptest.Server
	rights  map[string][]string
	reviews atomic.Int64
}

func newFakeAPIServer(t testing.TB, rights map[string][]string) *fakeAPIServer {
	t.Helper()
	fs := &fakeAPIServer{rights: rights}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		fs.reviews.Add(1)
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "expired" {
			http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
			return
		}
		var ssar authorizationv1.SelfSubjectAccessReview
		if err := json.NewDecoder(r.Body).Decode(&ssar); err != nil || ssar.Spec.ResourceAttributes == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		a := ssar.Spec.ResourceAttributes
		for _, ns := range fs.rights[token] {
			if ns == a.Namespace && a.Verb == "list" && a.Resource == "pods" && a.Group == "" {
				ssar.Status.Allowed = true
			}
		}
		if !ssar.Status.Allowed {
			ssar.Status.Reason = "no RBAC policy matched"
		}
		_ = json.NewEncoder(w).Encode(&ssar)
	}))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *fakeAPIServer) kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: %q}}]
users: [{name: nobody, user: {token: service-token}}]
contexts: [{name: fake, context: {cluster: fake, user: nobody}}]
current-context: fake
`, fs.URL)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	redisOnce sync.Once
	redisSrv  *redistest.Server
)

// testRedis is a private redis-server shared by the package's tests; each test takes its
// own database.
func testRedis(t testing.TB) *redistest.Server {
	t.Helper()
	redisOnce.Do(func() { redisSrv = redistest.Start(&testing.T{}) })
	if redisSrv == nil {
		t.Skip("no redis-server")
	}
	return redisSrv
}

// fixture is the family started on a fake API server and a private Redis database,
// served with the function's routes.
type fixture struct {
	fam     *Family
	api     *fakeAPIServer
	handler http.Handler
	db      *redis.Client
}

func newFixture(t testing.TB, db int, rights map[string][]string, extra map[string]string) *fixture {
	t.Helper()
	srv := testRedis(t)
	api := newFakeAPIServer(t, rights)
	cfg := map[string]string{
		EnvKubeconfig:      api.kubeconfig(t),
		EnvClusterName:     "c1",
		"DWP_REDIS_ADDR":   srv.Addr,
		"DWP_REDIS_DB":     fmt.Sprint(db),
		"DWP_REDIS_PREFIX": "test:",
	}
	for k, v := range extra {
		cfg[k] = v
	}
	f := New()
	ctx := context.Background()
	if err := f.Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	router := httprouter.New()
	f.Routes(router)
	er := eventrouter.New()
	f.Events(er)
	router.Handler(http.MethodPost, "/events", er)
	dbc := srv.Client(t, db)
	if err := dbc.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{fam: f, api: api, handler: router, db: dbc}
	if _, other := extra["DWP_REDIS_ADDR"]; !other {
		fx.emptyRound(t)
	}
	return fx
}

// emptyRound applies the cluster snapshots of a round at revision 1 that found no app:
// without a round the summaries are being rebuilt, and the app list answers 503.
func (fx *fixture) emptyRound(t testing.TB) {
	t.Helper()
	for _, kind := range []string{events.KindPods, events.KindWorkflows} {
		if _, err := fx.fam.store.ApplyClusterSnapshot(context.Background(), "c1", events.ClusterSnapshot{Kind: kind, Revision: 1}); err != nil {
			t.Fatal(err)
		}
	}
}

// eventRequest is e as a binary-mode HTTP request to /events.
func eventRequest(t testing.TB, e event.Event) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events", nil)
	if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&e), req); err != nil {
		t.Fatal(err)
	}
	return req
}

func (fx *fixture) post(t testing.TB, e event.Event) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	fx.handler.ServeHTTP(rec, eventRequest(t, e))
	return rec
}

func (fx *fixture) get(t testing.TB, path, token string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	fx.handler.ServeHTTP(rec, req)
	var body map[string]any
	b, _ := io.ReadAll(bytes.NewReader(rec.Body.Bytes()))
	_ = json.Unmarshal(b, &body)
	return rec, body
}
