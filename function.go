// Package function is dwp-sre's task function: the Knative function (in func's instanced
// form: New, Handle, Start, Stop, Ready, Alive) behind the portal's short operations. It
// is made of families of operations (functions/...); each brings its HTTP routes under
// /api/v1 and its CloudEvent handlers, which all arrive at POST /events.
package function

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	// CronJob time zones are checked with time.LoadLocation; images need not ship zoneinfo.
	_ "time/tzdata"

	"github.com/julienschmidt/httprouter"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/functions/gitops"
	"github.com/dwp-sre/dwp-sre/functions/summaries"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/internal/apidocs"
	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/cors"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// family is one family of operations.
type family interface {
	// Start configures the family from the function's cfg (./cfg merged with the environment).
	Start(ctx context.Context, cfg map[string]string) error
	// Stop releases what Start acquired.
	Stop(ctx context.Context) error
	// Routes registers the family's HTTP routes. A namespace path parameter is named
	// :namespace in every family (httprouter wants one name per position).
	Routes(r *httprouter.Router)
	// Events registers the family's CloudEvent handlers.
	Events(er *eventrouter.Router)
}

// documented families bring their part of the OpenAPI document (YAML or JSON, with
// paths and components).
type documented interface{ OpenAPI() []byte }

// replier families name the types of the events their handlers reply with; none may be a
// type the function handles, or the broker would loop it back.
type replier interface{ ReplyTypes() []string }

// families are the function's families of operations, in start order.
// Add a family with one line here.
func families() []family {
	return []family{
		workflows.New(),
		summaries.New(),
		gitops.New(),
	}
}

// Paths the function serves itself.
const (
	EventsPath  = "/events"
	OpenAPIPath = "/api/v1/openapi.json"
	// DocsPath is the interactive reference of the OpenAPI document; its assets are under it.
	DocsPath = "/docs"
)

// ownRoutes registers what the function serves itself: the events, the OpenAPI document
// and its reference page (no token needed: it shows the document, which is public too).
func ownRoutes(r *httprouter.Router, events http.Handler, doc []byte) {
	r.Handler(http.MethodPost, EventsPath, events)
	r.GET(OpenAPIPath, serveOpenAPI(doc))
	docs := apidocs.Handler(OpenAPIPath)
	r.Handler(http.MethodGet, DocsPath, docs)
	r.Handler(http.MethodGet, DocsPath+"/*asset", docs)
}

// envCORSOrigins names the portal origins whose pages may call the function from a browser
// (the console served by the SSE router, a portal on its own host).
const envCORSOrigins = "DWP_CORS_ORIGINS"

// envKubeconfig gives the API server that reviews event senders' tokens, with the
// function's own credentials (they need create on tokenreviews); empty means in-cluster.
const envKubeconfig = "DWP_KUBECONFIG"

// Function is the task function.
type Function struct {
	families func() []family
	// senders authenticates event senders' tokens; nil means a TokenReview with the
	// function's credentials and audience (tests give their own).
	senders eventauth.Authenticator

	mu      sync.RWMutex
	handler http.Handler
	router  *httprouter.Router // under handler: the routes, for Lookup
	started []family
	events  *eventrouter.Router
	openapi []byte
}

// EventTypes are the CloudEvent types the function handles and those its handlers reply
// with, read from its families without starting them: what the broker's Triggers must
// deliver, and must never deliver.
func EventTypes() (handled, replies []string) {
	er := eventrouter.New()
	for _, fam := range families() {
		fam.Events(er)
		if r, ok := fam.(replier); ok {
			replies = append(replies, r.ReplyTypes()...)
		}
	}
	return er.Types(), replies
}

// New returns the function, to be started with Start. Its families are listed in families.
func New() *Function { return &Function{families: families} }

// Start starts every family and routes their operations. A family that fails to start
// stops the ones started before it.
func (f *Function) Start(ctx context.Context, cfg map[string]string) (err error) {
	router := httprouter.New()
	events := eventrouter.New()
	var started []family
	defer func() {
		if err != nil {
			f.stopAll(context.WithoutCancel(ctx), started)
		}
	}()
	for _, fam := range f.families() {
		if err := fam.Start(ctx, cfg); err != nil {
			return fmt.Errorf("start %T: %w", fam, err)
		}
		started = append(started, fam)
		// httprouter and the event router panic on a route or type registered twice.
		if err := register(func() { fam.Routes(router); fam.Events(events) }); err != nil {
			return fmt.Errorf("register %T: %w", fam, err)
		}
	}
	handled := events.Types()
	for _, fam := range started {
		if r, ok := fam.(replier); ok {
			for _, t := range r.ReplyTypes() {
				if slices.Contains(handled, t) {
					return fmt.Errorf("%T replies with %s, which the function handles: the broker would loop it back", fam, t)
				}
			}
		}
	}
	doc, err := openAPI(started)
	if err != nil {
		return err
	}
	guard, err := f.senderGuard(cfg)
	if err != nil {
		return err
	}
	if err := register(func() { ownRoutes(router, guard.Wrap(events), doc) }); err != nil {
		return err
	}
	router.NotFound = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.NotFound("no operation at "+r.URL.Path))
	})
	router.MethodNotAllowed = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.Newf(http.StatusMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, w.Header().Get("Allow")))
	})
	router.PanicHandler = func(w http.ResponseWriter, r *http.Request, v any) {
		slog.ErrorContext(r.Context(), "handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v)
		problem.Write(w, problem.New(http.StatusInternalServerError, "internal error"))
	}

	origins, err := cors.ParseOrigins(cfg[envCORSOrigins])
	if err != nil {
		return fmt.Errorf("%s: %w", envCORSOrigins, err)
	}
	// Pages send the token as a header, never a cookie: no credentials mode.
	handler := cors.Policy{
		Origins: origins, Setting: envCORSOrigins,
		Methods: []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"},
		Headers: []string{"Authorization", "Content-Type"},
		Expose:  []string{"Location", "Retry-After"},
	}.Handler(router)

	f.mu.Lock()
	f.handler, f.router, f.started, f.events, f.openapi = handler, router, started, events, doc
	f.mu.Unlock()
	return nil
}

// senderGuard admits the events of the senders cfg allows (eventauth.EnvSenders), whose
// tokens the API server accepts for the function's audience. No sender is no event.
func (f *Function) senderGuard(cfg map[string]string) (*eventauth.Guard, error) {
	c, err := eventauth.ParseConfig(cfg)
	if err != nil {
		return nil, err
	}
	auth := f.senders
	if auth == nil && len(c.Senders) > 0 {
		rc, err := kube.RESTConfig(cfg[envKubeconfig])
		if err != nil {
			return nil, fmt.Errorf("%s, to review event senders' tokens: %w", envKubeconfig, err)
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, fmt.Errorf("kubernetes client for token reviews: %w", err)
		}
		auth = authz.NewReviewer(cs, authz.Options{Audiences: []string{c.Audience}})
	}
	return eventauth.NewGuard(auth, c), nil
}

func register(fn func()) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	fn()
	return nil
}

// Handle serves a request; before Start has finished it answers 503.
func (f *Function) Handle(w http.ResponseWriter, r *http.Request) {
	f.mu.RLock()
	h := f.handler
	f.mu.RUnlock()
	if h == nil {
		p := problem.New(http.StatusServiceUnavailable, "the function is starting")
		p.RetryAfter = 1
		problem.Write(w, p)
		return
	}
	h.ServeHTTP(w, r)
}

// Ready reports whether Start has finished.
func (f *Function) Ready(context.Context) (bool, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.handler != nil, nil
}

// Alive reports that the function can serve; it holds no state that could wedge.
func (f *Function) Alive(context.Context) (bool, error) { return true, nil }

// Stop stops the families in reverse start order.
func (f *Function) Stop(ctx context.Context) error {
	f.mu.Lock()
	started := f.started
	f.started, f.handler = nil, nil
	f.mu.Unlock()
	return f.stopAll(ctx, started)
}

func (f *Function) stopAll(ctx context.Context, started []family) error {
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		if err := started[i].Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %T: %w", started[i], err))
		}
	}
	return errors.Join(errs...)
}

func serveOpenAPI(doc []byte) httprouter.Handle {
	return func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}
}

// OpenAPI is the function's OpenAPI document (JSON), once started.
func (f *Function) OpenAPI() []byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.openapi
}

//go:embed openapi.yaml
var openapiBase []byte

// openAPI merges the function's own document with the families' parts into one JSON
// document.
func openAPI(fams []family) ([]byte, error) {
	parts := []apidocs.Part{{Name: "openapi.yaml", Doc: openapiBase}}
	for _, fam := range fams {
		if d, ok := fam.(documented); ok {
			parts = append(parts, apidocs.Part{Name: fmt.Sprintf("%T", fam), Doc: d.OpenAPI()})
		}
	}
	return apidocs.Merge(parts...)
}
