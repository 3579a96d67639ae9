package workflows

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// A CD Task Runner is a (Cluster)WorkflowTemplate annotated with cdrun.AnnotationTemplateKind.
// Its run is checked whole before anything is written: every parameter (the template's
// defaults filled in) against its kind, and the user's right to deploy what it renders
// where it renders it. The run is then sealed into the workflow, since the task function
// performs its steps later with its own rights.

// cdRun prepares the CD run of kind that p submits into ns for username: it validates,
// authorises, names the workflow and returns the annotations that carry the sealed run.
func (f *Family) cdRun(ctx context.Context, c *caller, ns, kind string, p *submitParams, spec *wfv1.WorkflowSpec, username string) (map[string]string, error) {
	if f.runKey == nil {
		return nil, problem.Newf(http.StatusNotImplemented, "the template is a CD Task Runner (%s), and CD runs are off: the function has no run key (%s)", kind, EnvRunKeyFile)
	}
	if p.entryPoint != "" {
		return nil, problem.BadRequest("the submit request is invalid", problem.FieldError{
			Field: "submitOptions.entryPoint", Detail: "a CD Task Runner always runs from its own entrypoint"})
	}
	params := effectiveParams(spec, p.params)
	var rendered []schemaResource
	switch kind {
	case cdrun.KindAppDelete:
		rendered = deleteResources
	default:
		s, errs := manifest.Parse(manifest.Kind(kind), manifest.Target{Namespace: ns, App: p.app, AppLabel: f.cfg.AppLabel}, params)
		if len(errs) > 0 {
			fes := make([]problem.FieldError, len(errs))
			for i, e := range errs {
				field := "submitOptions.parameters." + e.Field
				switch e.Field {
				case "namespace", "app":
					field = e.Field
				case "kind":
					field = "resourceName"
				}
				fes[i] = problem.FieldError{Field: field, Detail: e.Detail}
			}
			return nil, problem.BadRequest("the run's parameters are invalid: nothing was committed", fes...)
		}
		rendered = resourcesOf(s)
	}
	if err := c.mayDeploy(ctx, kind, ns, p.app, rendered); err != nil {
		return nil, err
	}
	// The seal binds the workflow's name, so the name is chosen here, not by the API server.
	if p.name == "" {
		p.name = p.generateName + randomSuffix()
		p.generateName = ""
	}
	// Every parameter is written into the workflow, so what runs is what was checked even
	// if the template's defaults change meanwhile.
	p.params = p.params[:0]
	for _, dp := range spec.Arguments.Parameters {
		p.params = append(p.params, kv{dp.Name, params[dp.Name]})
	}
	return f.runKey.Annotations(ns, p.name, cdrun.Run{Kind: kind, App: p.app, User: username, Params: params})
}

// effectiveParams are the template's parameters with their defaults, overridden by given.
func effectiveParams(spec *wfv1.WorkflowSpec, given []kv) map[string]string {
	out := map[string]string{}
	for _, dp := range spec.Arguments.Parameters {
		switch {
		case dp.Value != nil:
			out[dp.Name] = dp.Value.String()
		case dp.Default != nil:
			out[dp.Name] = dp.Default.String()
		default:
			out[dp.Name] = ""
		}
	}
	for _, p := range given {
		out[p.name] = p.value
	}
	return out
}

const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789" // as the API server's generateName

func randomSuffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = suffixAlphabet[int(b[i])%len(suffixAlphabet)]
	}
	return string(b)
}

// schemaResource is one kind of object a run writes: its API group and resource.
type schemaResource struct{ group, resource string }

// deleteResources are what an app-delete removes: an app service's objects at least.
var deleteResources = []schemaResource{{"apps", "deployments"}, {"", "services"}}

// resourcesOf are the kinds of objects s renders, read from its own files, so that the
// check follows what is really written.
func resourcesOf(s manifest.Spec) []schemaResource {
	files, err := s.Files()
	if err != nil {
		return nil
	}
	seen := map[schemaResource]bool{}
	var out []schemaResource
	for _, b := range files {
		for _, gk := range groupKinds(b) {
			r := schemaResource{gk.Group, strings.ToLower(gk.Kind) + "s"}
			if gk.Kind == "Ingress" {
				r.resource = "ingresses"
			}
			if gk.Kind == "HorizontalPodAutoscaler" {
				r.resource = "horizontalpodautoscalers"
			}
			if !seen[r] {
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// mayDeploy asks the API server whether the caller may create and update (delete, for
// app-delete) every kind of object the run writes, in the namespace it writes them to.
// The function writes them through Argo CD with its own rights; this is what keeps a user
// from deploying where Kubernetes would not let them.
func (c *caller) mayDeploy(ctx context.Context, kind, ns, app string, rs []schemaResource) error {
	verbs := []string{"create", "update"}
	if kind == cdrun.KindAppDelete {
		verbs = []string{"delete"}
	}
	target := ns
	if kind == string(manifest.KindProject) {
		target = app // a project's objects live in its own namespace
	}
	var denied []string
	for _, r := range rs {
		namespace := target
		if r.group == "" && r.resource == "namespaces" {
			namespace = ""
		}
		for _, verb := range verbs {
			review, err := c.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: namespace, Verb: verb, Group: r.group, Resource: r.resource,
				}},
			}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("access review: %w", err)
			}
			if !review.Status.Allowed {
				what := r.resource
				if r.group != "" {
					what += "." + r.group
				}
				if namespace != "" {
					what += " in namespace " + namespace
				}
				denied = append(denied, verb+" "+what)
			}
		}
	}
	if len(denied) > 0 {
		return problem.Forbidden(fmt.Sprintf("you may not deploy this run: it needs %s; nothing was committed", strings.Join(denied, ", ")))
	}
	return nil
}

// groupKinds are the group and kind of every object of a YAML file (documents, and the
// items of a List).
func groupKinds(b []byte) []schema.GroupKind {
	var out []schema.GroupKind
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var obj struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Items      []struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			} `json:"items"`
		}
		if err := dec.Decode(&obj); err != nil {
			return out
		}
		add := func(apiVersion, kind string) {
			if gv, err := schema.ParseGroupVersion(apiVersion); err == nil && kind != "" {
				out = append(out, gv.WithKind(kind).GroupKind())
			}
		}
		if strings.HasSuffix(obj.Kind, "List") {
			for _, it := range obj.Items {
				add(it.APIVersion, it.Kind)
			}
			continue
		}
		add(obj.APIVersion, obj.Kind)
	}
}
