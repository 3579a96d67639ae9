package summaries

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/julienschmidt/httprouter"
	"github.com/redis/go-redis/v9"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
)

// fakeAPIServer answers SelfSubjectAccessReviews: a token may list pods in the namespaces
// rights gives it; the token "expired" is not accepted. To the function's own token
// (service-token) it answers TokenReviews (a token is its user's name), SubjectAccessReviews
// (by the same rights) and the list of namespaces, paged.
type fakeAPIServer struct {
	*httptest.Server
	rights  map[string][]string
	reviews atomic.Int64

	mu         sync.Mutex
	namespaces []string
	listCalls  int
}

func (fs *fakeAPIServer) setNamespaces(nss ...string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.namespaces = nss
}

func (fs *fakeAPIServer) allowed(user string, a *authorizationv1.ResourceAttributes) bool {
	for _, ns := range fs.rights[user] {
		if ns == a.Namespace && a.Verb == "list" && a.Resource == "pods" && a.Group == "" {
			return true
		}
	}
	return false
}

// decodeObject reads a request's object, JSON or protobuf (client-go's typed clients may
// send either), and answers 400 when it cannot.
func decodeObject(w http.ResponseWriter, r *http.Request, into runtime.Object) bool {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		_, _, err = scheme.Codecs.UniversalDeserializer().Decode(body, nil, into)
	}
	if err != nil {
		http.Error(w, "bad object: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

// serveAsFunction answers what the function asks with its own credentials.
func (fs *fakeAPIServer) serveAsFunction(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews":
		var tr authenticationv1.TokenReview
		if !decodeObject(w, r, &tr) {
			return
		}
		if tr.Spec.Token != "expired" {
			tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: tr.Spec.Token}}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&tr)
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		fs.reviews.Add(1)
		var sar authorizationv1.SubjectAccessReview
		if !decodeObject(w, r, &sar) {
			return
		}
		sar.Status.Allowed = fs.allowed(sar.Spec.User, sar.Spec.ResourceAttributes)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&sar)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/namespaces":
		fs.mu.Lock()
		all := slices.Clone(fs.namespaces)
		fs.listCalls++
		fs.mu.Unlock()
		from, _ := strconv.Atoi(r.URL.Query().Get("continue"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		to := len(all)
		if limit > 0 {
			to = min(to, from+limit)
		}
		list := corev1.NamespaceList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NamespaceList"}}
		for _, ns := range all[from:to] {
			list.Items = append(list.Items, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		}
		if to < len(all) {
			list.Continue = strconv.Itoa(to)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&list)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func newFakeAPIServer(t testing.TB, rights map[string][]string) *fakeAPIServer {
	t.Helper()
	fs := &fakeAPIServer{rights: rights}
	// TLS: clientcmd gives a kubeconfig's credentials to secure servers only.
	fs.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer service-token" {
			fs.serveAsFunction(w, r)
			return
		}
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
		ssar.Status.Allowed = fs.allowed(token, ssar.Spec.ResourceAttributes)
		if !ssar.Status.Allowed {
			ssar.Status.Reason = "no RBAC policy matched"
		}
		// As the API server answers: typed, and said to be JSON.
		ssar.APIVersion, ssar.Kind = "authorization.k8s.io/v1", "SelfSubjectAccessReview"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
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
clusters: [{name: fake, cluster: {server: %q, insecure-skip-tls-verify: true}}]
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
	redisOnce   sync.Once
	redisSrv    *redistest.Server
	redisSrvErr error
)

// testRedis is a private redis-server shared by the package's tests; each test takes its
// own database.
func testRedis(t testing.TB) *redistest.Server {
	t.Helper()
	redisOnce.Do(func() { redisSrv, redisSrvErr = redistest.Launch() })
	if errors.Is(redisSrvErr, redistest.ErrNoRedis) {
		t.Skip(redisSrvErr)
	}
	if redisSrvErr != nil {
		t.Fatal(redisSrvErr)
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

// TestMain stops the package's shared redis-server once its tests and benchmarks are done.
func TestMain(m *testing.M) {
	code := m.Run()
	redisSrv.Stop()
	os.Exit(code)
}
