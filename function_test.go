package function

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/julienschmidt/httprouter"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/internal/runner"
)

// The instanced form Knative func detects, and what the runner uses.
var (
	_ interface {
		Handle(http.ResponseWriter, *http.Request)
		Start(context.Context, map[string]string) error
		Stop(context.Context) error
		Ready(context.Context) (bool, error)
		Alive(context.Context) (bool, error)
	} = New()
	_ runner.Handler           = (*Function)(nil)
	_ runner.Starter           = (*Function)(nil)
	_ runner.Stopper           = (*Function)(nil)
	_ runner.ReadinessReporter = (*Function)(nil)
	_ runner.LivenessReporter  = (*Function)(nil)
	_ func() *Function         = New
)

func TestFuncYAML(t *testing.T) {
	b, err := os.ReadFile("func.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		SpecVersion string `json:"specVersion"`
		Name        string `json:"name"`
		Runtime     string `json:"runtime"`
		Created     string `json:"created"`
		Invoke      string `json:"invoke"`
		Deploy      struct {
			HealthEndpoints struct {
				Liveness  string `json:"liveness"`
				Readiness string `json:"readiness"`
			} `json:"healthEndpoints"`
			Options struct {
				Scale struct {
					Min *int `json:"min"`
					Max *int `json:"max"`
				} `json:"scale"`
			} `json:"options"`
		} `json:"deploy"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if f.SpecVersion != "0.36.0" {
		t.Errorf("specVersion %q", f.SpecVersion)
	}
	if !regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(f.Name) {
		t.Errorf("name %q", f.Name)
	}
	if f.Runtime != "go" || f.Invoke != "http" {
		t.Errorf("runtime %q invoke %q", f.Runtime, f.Invoke)
	}
	if _, err := time.Parse(time.RFC3339, f.Created); err != nil {
		t.Errorf("created %q: %v", f.Created, err)
	}
	if f.Deploy.HealthEndpoints.Liveness != runner.LivenessPath || f.Deploy.HealthEndpoints.Readiness != runner.ReadinessPath {
		t.Errorf("health endpoints %+v, the runner serves %s and %s", f.Deploy.HealthEndpoints, runner.LivenessPath, runner.ReadinessPath)
	}
	s := f.Deploy.Options.Scale
	if s.Min == nil || *s.Min != 0 {
		t.Errorf("scale.min must be 0 (scale to zero)")
	}
	if s.Max != nil && *s.Max < 1 {
		t.Errorf("scale.max %d", *s.Max)
	}
}

// TestFuncDetection checks what func's detector reads from the root's .go files: a
// receiver-less New (instanced form) and no receiver-less Handle (static form), since
// both at once is an error.
func TestFuncDetection(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var hasNew bool
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil {
				continue
			}
			switch fn.Name.Name {
			case "New":
				hasNew = true
			case "Handle":
				t.Errorf("%s: a receiver-less Handle makes func see the static form too", name)
			}
		}
	}
	if !hasNew {
		t.Error("no receiver-less New")
	}
}

// testKubeconfig points at an API server that does not exist: starting must not need one.
func testKubeconfig(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startReal(t testing.TB) *Function {
	t.Helper()
	f := New()
	if err := f.Start(context.Background(), map[string]string{"DWP_KUBECONFIG": testKubeconfig(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Stop(context.Background()) })
	return f
}

func TestReplyTypesAreNotHandled(t *testing.T) {
	f := startReal(t)
	handled := f.events.Types()
	if len(handled) == 0 {
		t.Fatal("the function handles no event type")
	}
	for _, fam := range f.started {
		r, ok := fam.(replier)
		if !ok {
			continue
		}
		for _, rt := range r.ReplyTypes() {
			for _, ht := range handled {
				if rt == ht {
					t.Errorf("%T replies with %s, which the function handles", fam, rt)
				}
			}
		}
	}

	loop := &testFamily{types: []string{"io.dwp.test.ping.v1"}, replies: []string{"io.dwp.test.ping.v1"}}
	g := &Function{families: func() []family { return []family{loop} }}
	if err := g.Start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("a family replying with a handled type started: %v", err)
	}
	if !loop.stopped {
		t.Fatal("the family was not stopped after the failed start")
	}
}

// testFamily records what reaches it.
type testFamily struct {
	types    []string
	replies  []string
	startErr error
	stopped  bool
	got      chan event.Event
	path     string
}

func (tf *testFamily) Start(context.Context, map[string]string) error { return tf.startErr }
func (tf *testFamily) Stop(context.Context) error                     { tf.stopped = true; return nil }
func (tf *testFamily) ReplyTypes() []string                           { return tf.replies }
func (tf *testFamily) Routes(r *httprouter.Router) {
	if tf.path != "" {
		r.GET(tf.path, func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) { w.WriteHeader(http.StatusTeapot) })
	}
}
func (tf *testFamily) Events(er *eventrouter.Router) {
	for _, typ := range tf.types {
		er.Handle(typ, func(_ context.Context, e event.Event) (*event.Event, error) {
			var d struct {
				N int `json:"n"`
			}
			if err := e.DataAs(&d); err != nil || d.N < 0 {
				return nil, eventrouter.Invalidf("data must be {\"n\": <non-negative number>}")
			}
			if tf.got != nil {
				tf.got <- e
			}
			reply := event.New()
			reply.SetID(e.ID() + "-reply")
			reply.SetType("io.dwp.test.pong.v1")
			reply.SetSource("/test")
			return &reply, reply.SetData(event.ApplicationJSON, d)
		})
	}
}

// testSenders accepts the token "sender" (the allowed sender) and "stranger".
type testSenders struct{}

func (testSenders) Authenticate(_ context.Context, token string) (authz.User, error) {
	if token == "sender" || token == "stranger" {
		return authz.User{Name: token}, nil
	}
	return authz.User{}, authz.ErrUnauthenticated
}

var senderCfg = map[string]string{eventauth.EnvAudience: "test", eventauth.EnvSenders: "sender"}

func startTest(t *testing.T, fams ...family) *httptest.Server {
	t.Helper()
	f := &Function{families: func() []family { return fams }, senders: testSenders{}}
	if err := f.Start(context.Background(), senderCfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(f.Handle))
	t.Cleanup(srv.Close)
	return srv
}

func TestCloudEvents(t *testing.T) {
	tf := &testFamily{types: []string{"io.dwp.test.ping.v1"}, got: make(chan event.Event, 4)}
	srv := startTest(t, tf)

	t.Run("binary and structured reach the handler", func(t *testing.T) {
		for _, mode := range []string{"binary", "structured"} {
			e := event.New()
			e.SetID("id-" + mode)
			e.SetType("io.dwp.test.ping.v1")
			e.SetSource("/test")
			_ = e.SetData(event.ApplicationJSON, map[string]int{"n": 7})
			ctx := cloudevents.ContextWithTarget(context.Background(), srv.URL+EventsPath)
			if mode == "structured" {
				ctx = cloudevents.WithEncodingStructured(ctx)
			} else {
				ctx = cloudevents.WithEncodingBinary(ctx)
			}
			c, err := cloudevents.NewClientHTTP(cehttp.WithHeader("Authorization", "Bearer sender"))
			if err != nil {
				t.Fatal(err)
			}
			reply, res := c.Request(ctx, e)
			if !cloudevents.IsACK(res) {
				t.Fatalf("%s: %v", mode, res)
			}
			select {
			case got := <-tf.got:
				if got.ID() != "id-"+mode {
					t.Fatalf("%s: handler got %s", mode, got.ID())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the handler got nothing", mode)
			}
			if reply == nil || reply.Type() != "io.dwp.test.pong.v1" || reply.ID() != "id-"+mode+"-reply" {
				t.Fatalf("%s: reply %v", mode, reply)
			}
		}
	})

	bad := []struct {
		name    string
		headers map[string]string
		body    string
		want    int
		reason  string
	}{
		{"plain json", map[string]string{"Content-Type": "application/json"}, `{"n":1}`, 400, "not a CloudEvent"},
		{"empty", nil, ``, 400, "not a CloudEvent"},
		{"structured not json", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":`, 400, "malformed"},
		{"structured missing id", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0","type":"io.dwp.test.ping.v1","source":"/x"}`, 400, "id"},
		{"binary missing source", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Type": "io.dwp.test.ping.v1", "Content-Type": "application/json"}, `{"n":1}`, 400, "source"},
		{"binary unknown version", map[string]string{"Ce-Specversion": "9.9", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.test.ping.v1"}, `{}`, 400, ""},
		{"batch", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, `[]`, 400, "batch"},
		{"unknown type", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.nobody.v1", "Content-Type": "application/json"}, `{}`, 400, "unknown event type"},
		{"data the handler rejects", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.test.ping.v1", "Content-Type": "application/json"}, `{"n":-1}`, 400, "non-negative"},
		{"too large", map[string]string{"Content-Type": "application/cloudevents+json"}, strings.Repeat(" ", eventrouter.MaxEventBytes+1), 413, ""},
		{"no token", map[string]string{"Authorization": "", "Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.test.ping.v1", "Content-Type": "application/json"}, `{"n":1}`, 401, "Authorization: Bearer"},
		{"token not accepted", map[string]string{"Authorization": "Bearer forged", "Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.test.ping.v1", "Content-Type": "application/json"}, `{"n":1}`, 401, "not accepted"},
		{"sender not allowed", map[string]string{"Authorization": "Bearer stranger", "Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.test.ping.v1", "Content-Type": "application/json"}, `{"n":1}`, 403, "may not send"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+EventsPath, strings.NewReader(b.body))
			req.Header.Set("Authorization", "Bearer sender")
			for k, v := range b.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != b.want || !strings.Contains(string(body), b.reason) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, body, b.want, b.reason)
			}
		})
	}
	select {
	case e := <-tf.got:
		t.Fatalf("a bad request reached the handler: %s", e)
	default:
	}
}

func TestHandleAndLifecycle(t *testing.T) {
	f := &Function{families: func() []family { return []family{&testFamily{path: "/api/v1/tea"}} }}
	rec := httptest.NewRecorder()
	f.Handle(rec, httptest.NewRequest(http.MethodGet, "/api/v1/tea", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Type") != problem.ContentType {
		t.Fatalf("before start: %d", rec.Code)
	}
	if ok, _ := f.Ready(context.Background()); ok {
		t.Fatal("ready before start")
	}
	if err := f.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Ready(context.Background()); !ok {
		t.Fatal("not ready after start")
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/api/v1/tea", http.StatusTeapot},
		{http.MethodGet, "/api/v1/nothing", http.StatusNotFound},
		{http.MethodDelete, "/api/v1/tea", http.StatusMethodNotAllowed},
		{http.MethodGet, EventsPath, http.StatusMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		f.Handle(rec, httptest.NewRequest(c.method, c.path, nil))
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, rec.Code, c.want)
		}
		if c.want != http.StatusTeapot && rec.Header().Get("Content-Type") != problem.ContentType {
			t.Errorf("%s %s: not a problem", c.method, c.path)
		}
	}
	if err := f.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Ready(context.Background()); ok {
		t.Fatal("ready after stop")
	}
}

func TestStartFailures(t *testing.T) {
	first := &testFamily{}
	failing := &testFamily{startErr: errors.New("no database")}
	f := &Function{families: func() []family { return []family{first, failing} }}
	if err := f.Start(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("start: %v", err)
	}
	if !first.stopped || failing.stopped {
		t.Fatalf("stopped: first %v, failing %v", first.stopped, failing.stopped)
	}

	a := &testFamily{types: []string{"io.dwp.test.ping.v1"}}
	b := &testFamily{types: []string{"io.dwp.test.ping.v1"}}
	f = &Function{families: func() []family { return []family{a, b} }}
	if err := f.Start(context.Background(), nil); err == nil {
		t.Fatal("two families handling one type started")
	}
	if !a.stopped || !b.stopped {
		t.Fatal("families not stopped after a failed start")
	}

	// The real function refuses to start without a way to reach Kubernetes.
	err := New().Start(context.Background(), map[string]string{"DWP_KUBECONFIG": filepath.Join(t.TempDir(), "absent")})
	if err == nil {
		t.Fatal("started without a kubeconfig")
	}
}

func FuzzEvents(f *testing.F) {
	f.Add("application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"/x","type":"io.dwp.test.ping.v1","data":{"n":1}}`)
	f.Add("application/json", "1.0", "io.dwp.test.ping.v1", `{"n":2}`)
	f.Add("application/json", "1.0", "io.dwp.other.v1", `{}`)
	f.Add("text/plain", "", "", `hello`)
	f.Add("application/cloudevents+json", "", "", `{"specversion":"1.0","id":"","source":"","type":""}`)
	f.Add("application/cloudevents+json", "", "", `{"specversion":"1.0","id":"1","source":"/x","type":"io.dwp.test.ping.v1","data_base64":"!!"}`)
	f.Add("application/cloudevents-batch+json", "", "", `[{}]`)
	f.Add("application/json", "0.3", "io.dwp.test.ping.v1", `{"n":"x"}`)
	tf := &testFamily{types: []string{"io.dwp.test.ping.v1"}}
	fn := &Function{families: func() []family { return []family{tf} }, senders: testSenders{}}
	if err := fn.Start(context.Background(), senderCfg); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, contentType, specVersion, ceType, body string) {
		req := httptest.NewRequest(http.MethodPost, EventsPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sender")
		req.Header["Content-Type"] = []string{contentType}
		if specVersion != "" {
			req.Header["Ce-Specversion"] = []string{specVersion}
			req.Header["Ce-Id"] = []string{"1"}
			req.Header["Ce-Source"] = []string{"/fuzz"}
			req.Header["Ce-Type"] = []string{ceType}
		}
		rec := httptest.NewRecorder()
		fn.Handle(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%q %q %q %q: %d %s", contentType, specVersion, ceType, body, rec.Code, rec.Body)
		}
	})
}

// Secure by default: with no sender configured, the function takes no event at all.
func TestNoSenderNoEvent(t *testing.T) {
	f := startReal(t)
	req := httptest.NewRequest(http.MethodPost, EventsPath, strings.NewReader(`{}`))
	req.Header = http.Header{"Authorization": {"Bearer anything"}, "Ce-Specversion": {"1.0"}, "Ce-Id": {"1"},
		"Ce-Source": {"/x"}, "Ce-Type": {"io.dwp.pod.changed.v1"}, "Content-Type": {"application/json"}}
	rec := httptest.NewRecorder()
	f.Handle(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), eventauth.EnvSenders) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if _, err := eventauth.ParseConfig(map[string]string{eventauth.EnvSenders: "x"}); err == nil {
		t.Fatal("senders without an audience accepted")
	}
}
