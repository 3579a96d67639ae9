package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/julienschmidt/httprouter"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/httpjson"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// requestTimeout is shorter than the server's 30 s write timeout, so a slow upstream
// is answered with a problem rather than a cut connection.
const requestTimeout = 25 * time.Second

// handlerFunc serves one request for an authenticated caller; a returned error is
// answered as a problem.
type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error

func (f *Family) handle(h handlerFunc) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		authz.Serve(w, r, requestTimeout, func(ctx context.Context, token string) error {
			c, err := f.callers.get(token)
			if err != nil {
				return fmt.Errorf("clients: %w", err)
			}
			return h(ctx, w, r, ps, c)
		})
	}
}

func pathErrors(ps httprouter.Params, names ...string) error {
	var errs []problem.FieldError
	for _, n := range names {
		var fe *problem.FieldError
		if n == "namespace" {
			fe = validateNamespace(ps.ByName(n))
		} else {
			fe = validateName(n, ps.ByName(n))
		}
		if fe != nil {
			errs = append(errs, *fe)
		}
	}
	if len(errs) > 0 {
		return problem.BadRequest("the path is invalid", errs...)
	}
	return nil
}

func (f *Family) submit(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	ns := ps.ByName("namespace")
	if err := requireJSON(r); err != nil {
		return err
	}
	var req SubmitRequest
	if err := httpjson.Decode(r.Body, maxSubmitBody, &req); err != nil {
		if fe := validateNamespace(ns); fe != nil {
			return problem.BadRequest("the path is invalid", *fe)
		}
		return err
	}
	p, err := req.validate(ns, &f.cfg)
	if err != nil {
		return err
	}
	var spec *wfv1.WorkflowSpec
	var tmeta metav1.ObjectMeta
	if p.kind == KindClusterWorkflowTemplate {
		t, err := c.Argo.ArgoprojV1alpha1().ClusterWorkflowTemplates().Get(ctx, p.template, metav1.GetOptions{})
		if err != nil {
			return templateError(err, p.kind, "", p.template)
		}
		spec, tmeta = &t.Spec, t.ObjectMeta
	} else {
		t, err := c.Argo.ArgoprojV1alpha1().WorkflowTemplates(ns).Get(ctx, p.template, metav1.GetOptions{})
		if err != nil {
			return templateError(err, p.kind, ns, p.template)
		}
		spec, tmeta = &t.Spec, t.ObjectMeta
	}
	if err := p.checkAgainst(spec); err != nil {
		return err
	}
	username, err := c.Username(ctx)
	if err != nil {
		return err
	}
	var annotations map[string]string
	if kind := tmeta.Annotations[cdrun.AnnotationTemplateKind]; kind != "" {
		if annotations, err = f.cdRun(ctx, c, ns, kind, &p, spec, username); err != nil {
			return err
		}
	}
	wf := p.workflow(ns, username, &f.cfg)
	for k, v := range annotations {
		wf.Annotations[k] = v
	}
	created, err := c.Argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, wf, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create workflow: %w", err)
	}
	phase := string(created.Status.Phase)
	if phase == "" {
		phase = string(wfv1.WorkflowPending)
	}
	w.Header().Set("Location", fmt.Sprintf("/api/v1/namespaces/%s/workflows/%s", ns, url.PathEscape(created.Name)))
	return httpjson.Write(w, http.StatusCreated, SubmitResponse{Name: created.Name, Namespace: created.Namespace, UID: string(created.UID), Phase: phase})
}

func templateError(err error, kind, ns, name string) error {
	if apierrors.IsNotFound(err) {
		if ns == "" {
			return problem.NotFound(fmt.Sprintf("%s %q not found", kind, name))
		}
		return problem.NotFound(fmt.Sprintf("%s %q not found in namespace %s", kind, name, ns))
	}
	return fmt.Errorf("get %s %s: %w", kind, name, err)
}

func (f *Family) list(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	if err := pathErrors(ps, "namespace"); err != nil {
		return err
	}
	lq, err := parseListQuery(r.URL.Query(), "projection")
	if err != nil {
		return err
	}
	out, err := listWorkflows(ctx, c.Clients, ps.ByName("namespace"), lq, &f.cfg)
	if err != nil {
		return err
	}
	return httpjson.Write(w, http.StatusOK, out)
}

func projectionParam(q url.Values) (string, error) {
	for k := range q {
		if k != "projection" {
			return "", problem.BadRequest("the query is invalid", problem.FieldError{Field: k, Detail: "unknown query parameter; known: projection"})
		}
	}
	switch v := q["projection"]; {
	case len(v) == 0:
		return ProjectionFull, nil
	case len(v) == 1 && (v[0] == ProjectionFull || v[0] == ProjectionSummary):
		return v[0], nil
	default:
		return "", problem.BadRequest("the query is invalid", problem.FieldError{Field: "projection", Detail: fmt.Sprintf("must be %s or %s, once", ProjectionSummary, ProjectionFull)})
	}
}

func (f *Family) get(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	if err := pathErrors(ps, "namespace", "name"); err != nil {
		return err
	}
	projection, err := projectionParam(r.URL.Query())
	if err != nil {
		return err
	}
	ns, name := ps.ByName("namespace"), ps.ByName("name")
	wf, err := c.Argo.ArgoprojV1alpha1().Workflows(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get workflow: %w", err)
	}
	return httpjson.Write(w, http.StatusOK, project(wf, projection))
}

func (f *Family) stop(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	return f.shutdown(ctx, w, ps, c, wfv1.ShutdownStrategyStop)
}

func (f *Family) terminate(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	return f.shutdown(ctx, w, ps, c, wfv1.ShutdownStrategyTerminate)
}

// Labels Argo puts on a workflow for the last user action on it.
const (
	labelActor  = "workflows.argoproj.io/actor"
	labelAction = "workflows.argoproj.io/action"
)

// shutdown sets spec.shutdown as Argo's stop and terminate do: a merge patch, guarded by
// the resourceVersion read, so that the "already finished" check and the patch act on the
// same version; a conflict re-reads and tries again. Stop runs the exit handlers,
// Terminate does not; Terminate may follow Stop, not the reverse.
func (f *Family) shutdown(ctx context.Context, w http.ResponseWriter, ps httprouter.Params, c *caller, strategy wfv1.ShutdownStrategy) error {
	if err := pathErrors(ps, "namespace", "name"); err != nil {
		return err
	}
	ns, name := ps.ByName("namespace"), ps.ByName("name")
	username, err := c.Username(ctx)
	if err != nil {
		return err
	}
	wfs := c.Argo.ArgoprojV1alpha1().Workflows(ns)
	var updated *wfv1.Workflow
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		wf, err := wfs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get workflow: %w", err)
		}
		if wf.Status.Phase.Completed() || wf.Labels[LabelCompleted] == "true" {
			return problem.Conflict(fmt.Sprintf("workflow %s has already finished (%s): there is nothing to %s", name, wf.Status.Phase, verbOf(strategy)))
		}
		if wf.Spec.Shutdown == strategy || (strategy == wfv1.ShutdownStrategyStop && wf.Spec.Shutdown == wfv1.ShutdownStrategyTerminate) {
			return problem.Conflict(fmt.Sprintf("workflow %s is already shutting down (%s)", name, wf.Spec.Shutdown))
		}
		patch := map[string]any{
			"metadata": map[string]any{
				"resourceVersion": wf.ResourceVersion,
				"labels":          map[string]string{labelActor: labelSafe(username), labelAction: string(strategy)},
			},
			"spec": map[string]any{"shutdown": strategy},
		}
		if labelSafe(username) == "" {
			delete(patch["metadata"].(map[string]any), "labels")
		}
		b, err := json.Marshal(patch)
		if err != nil {
			return err
		}
		updated, err = wfs.Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{})
		return err
	})
	if err != nil {
		return err
	}
	return httpjson.Write(w, http.StatusOK, Summary(updated))
}

func verbOf(s wfv1.ShutdownStrategy) string {
	if s == wfv1.ShutdownStrategyTerminate {
		return "terminate"
	}
	return "stop"
}

func (f *Family) archiveCaller(c *caller) archive.Caller {
	return archive.Caller{Token: c.token, Can: c.Can}
}

func (f *Family) listArchived(ctx context.Context, w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *caller) error {
	q := r.URL.Query()
	ns := q.Get("namespace")
	lq, err := parseListQuery(q, "namespace", "namePrefix")
	var errs []problem.FieldError
	if p, ok := problem.As(err); ok {
		errs = p.Errors
	} else if err != nil {
		return err
	}
	switch {
	case len(q["namespace"]) == 0:
		errs = append(errs, problem.FieldError{Field: "namespace", Detail: "is required: archived workflows are listed per namespace"})
	case len(q["namespace"]) == 1:
		if fe := validateNamespace(ns); fe != nil {
			errs = append(errs, *fe)
		}
	}
	if len(errs) > 0 {
		return problem.BadRequest("the query is invalid", errs...)
	}
	page, err := f.archive.List(ctx, f.archiveCaller(c), archive.Query{
		Namespace:  ns,
		Labels:     lq.labelFilter(&f.cfg),
		Phases:     lq.phases,
		NamePrefix: lq.namePrefix,
		Limit:      lq.limit,
		Continue:   lq.cont,
	})
	if err != nil {
		return err
	}
	out := WorkflowList{Items: make([]wfv1.Workflow, 0, len(page.Items)), Metadata: ListMeta{Continue: page.Continue}}
	for i := range page.Items {
		out.Items = append(out.Items, Summary(&page.Items[i]))
	}
	return httpjson.Write(w, http.StatusOK, out)
}

func (f *Family) getArchived(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *caller) error {
	uid := ps.ByName("uid")
	if !validUID(uid) {
		return problem.BadRequest("the path is invalid", problem.FieldError{Field: "uid", Detail: "must be a workflow's uid (letters, digits and '-', at most 128)"})
	}
	projection, err := projectionParam(r.URL.Query())
	if err != nil {
		return err
	}
	wf, err := f.archive.Get(ctx, f.archiveCaller(c), uid)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return problem.New(http.StatusGatewayTimeout, "the archive did not answer in time")
		}
		return err
	}
	return httpjson.Write(w, http.StatusOK, project(wf, projection))
}

func validUID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
