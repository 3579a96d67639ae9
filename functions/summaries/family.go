// Package summaries is the task function's family that keeps the app list's summaries:
// its CloudEvent handlers apply the watcher's events (internal/events) to the per-app
// summaries in Redis (internal/summarystore), exactly under at-least-once delivery in
// any order, and its HTTP API reads them for the portal, to users allowed to list pods in
// the namespace; it also says which namespaces a user may see, with their apps.
package summaries

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/julienschmidt/httprouter"
	"github.com/redis/go-redis/v9"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
)

// Family is the summaries family of the function.
type Family struct {
	cfg    Config
	rdb    *redis.Client
	store  *summarystore.Store
	access *accessChecker
	// reviewer and namespaces serve the namespace list: the function's own credentials
	// list the namespaces and review each caller's access to them.
	reviewer   *authz.Reviewer
	namespaces namespaceLister
}

// New returns the family, configured by Start.
func New() *Family { return &Family{} }

//go:embed openapi.yaml
var openapiDoc []byte

// OpenAPI is the family's part of the function's OpenAPI document.
func (f *Family) OpenAPI() []byte { return openapiDoc }

// Start reads the configuration and makes the clients. It does no network I/O (Redis is
// connected at first use), so the function is ready at once; while Redis is unreachable
// events are answered 5xx, to be redelivered.
func (f *Family) Start(_ context.Context, cfg map[string]string) error {
	c, err := ParseConfig(cfg)
	if err != nil {
		return err
	}
	base, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvKubeconfig, err)
	}
	access, err := newAccessChecker(base, c.AccessCacheTTL)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(base)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	reviewer, err := authz.NewReviewerForConfig(base, authz.Options{TTL: reviewTTL(c.AccessCacheTTL), DenyTTL: reviewTTL(min(c.AccessCacheTTL, deniedTTL))})
	if err != nil {
		return err
	}
	f.cfg, f.access, f.reviewer, f.namespaces = c, access, reviewer, listAllNamespaces(cs)
	f.rdb = c.Redis.Client()
	f.store = summarystore.New(f.rdb, c.Redis.Prefix)
	return nil
}

// reviewTTL is how long the reviewer keeps an answer: the reviewer reads zero as its
// default, so a cache turned off (0) keeps answers for a nanosecond, that is not at all.
func reviewTTL(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Nanosecond
	}
	return d
}

// Stop closes the Redis connections.
func (f *Family) Stop(context.Context) error {
	if f.rdb != nil {
		if err := f.rdb.Close(); err != nil {
			return fmt.Errorf("close redis: %w", err)
		}
	}
	return nil
}

// Routes registers the app list API.
func (f *Family) Routes(r *httprouter.Router) {
	r.GET("/api/v1/apps", f.handle(f.listMany))
	r.GET("/api/v1/namespaces", f.handle(f.listNamespaces))
	r.GET("/api/v1/namespaces/:namespace/apps", f.handle(f.list))
	r.GET("/api/v1/namespaces/:namespace/apps/:app", f.handle(f.get))
}

// Events registers the handlers of the watcher's events.
func (f *Family) Events(er *eventrouter.Router) {
	er.Handle(events.TypePodChanged, f.onPod)
	er.Handle(events.TypePodDeleted, f.onPod)
	er.Handle(events.TypeWorkflowChanged, f.onWorkflow)
	er.Handle(events.TypeWorkflowDeleted, f.onWorkflow)
	er.Handle(events.TypeApplicationChanged, f.onApplication)
	er.Handle(events.TypeApplicationDeleted, f.onApplication)
	er.Handle(events.TypeAppSnapshot, f.onAppSnapshot)
	er.Handle(events.TypeClusterSnapshot, f.onClusterSnapshot)
}
