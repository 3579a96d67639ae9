// Package workflows is the task function's family of Argo Workflows operations: list the
// templates a user may submit (the Task Runner catalogue), submit a workflow from one, list
// an app's pipeline history (live and archived runs in one list), get, stop and terminate
// a workflow, and read archived workflows, over HTTP with the portal user's bearer token
// (so Kubernetes RBAC decides what each user may do); and turn a workflow exit hook's
// CloudEvent into a history entry.
package workflows

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/kube"
)

// Family is the workflows family of the function.
type Family struct {
	cfg     Config
	callers *callers
	// service acts as the function itself (the kubeconfig's or the pod's credentials),
	// only for CloudEvents, which carry no user.
	service *Clients
	archive archive.Archive
	// runKey seals CD runs; nil when none is configured (CD runs are refused).
	runKey cdrun.Key
	now    func() time.Time
}

// New returns the family, configured by Start.
func New() *Family { return &Family{now: time.Now} }

//go:embed openapi.yaml
var openapiDoc []byte

// OpenAPI is the family's part of the function's OpenAPI document.
func (f *Family) OpenAPI() []byte { return openapiDoc }

// Start reads the configuration and makes the clients. It does no network I/O (Postgres
// is connected at the first archive query), so the function is ready at once.
func (f *Family) Start(ctx context.Context, cfg map[string]string) error {
	c, err := ParseConfig(cfg)
	if err != nil {
		return err
	}
	base, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvKubeconfig, err)
	}
	service, err := NewClients(base)
	if err != nil {
		return err
	}
	var arch archive.Archive = archive.Unconfigured{}
	switch {
	case c.ArgoServerURL != "":
		if arch, err = archive.NewArgoServer(c.ArgoServerURL, c.ArgoServerCAFile); err != nil {
			return err
		}
	case c.ArchiveDSN != "":
		if arch, err = archive.NewPostgres(ctx, c.ArchiveDSN, c.ArchiveClusterName, c.ArchiveInstanceID); err != nil {
			return err
		}
	}
	if c.RunKeyFile != "" {
		if f.runKey, err = cdrun.LoadKey(c.RunKeyFile); err != nil {
			return fmt.Errorf("%s: %w", EnvRunKeyFile, err)
		}
	}
	f.cfg, f.service, f.archive = c, service, arch
	f.callers = newCallers(tokenClients(base), c.ClientCacheTTL)
	if f.now == nil {
		f.now = time.Now
	}
	return nil
}

// Stop releases the archive's connections.
func (f *Family) Stop(context.Context) error {
	if f.archive != nil {
		f.archive.Close()
	}
	return nil
}

// Routes registers the family's HTTP API.
func (f *Family) Routes(r *httprouter.Router) {
	r.POST("/api/v1/namespaces/:namespace/workflows", f.handle(f.submit))
	r.GET("/api/v1/namespaces/:namespace/workflows", f.handle(f.list))
	r.GET("/api/v1/namespaces/:namespace/workflows/:name", f.handle(f.get))
	r.PUT("/api/v1/namespaces/:namespace/workflows/:name/stop", f.handle(f.stop))
	r.PUT("/api/v1/namespaces/:namespace/workflows/:name/terminate", f.handle(f.terminate))
	r.GET("/api/v1/namespaces/:namespace/workflow-history", f.handle(f.history))
	r.GET("/api/v1/namespaces/:namespace/workflow-templates", f.handle(f.listTemplates))
	r.GET("/api/v1/namespaces/:namespace/workflow-templates/:name", f.handle(f.getTemplate))
	r.GET("/api/v1/archived-workflows", f.handle(f.listArchived))
	r.GET("/api/v1/archived-workflows/:uid", f.handle(f.getArchived))
	r.GET("/api/v1/namespaces/:namespace/archived-workflows/:uid/nodes/:node/log", f.handle(f.getArchivedStepLog))
}

// Events registers the family's CloudEvent handlers.
func (f *Family) Events(er *eventrouter.Router) {
	er.Handle(EventWorkflowFinished, f.onFinished)
}

// ReplyTypes are the types of the events the family's handlers reply with.
func (f *Family) ReplyTypes() []string { return []string{EventWorkflowHistory} }
