package workflows

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

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
	var invalid []problem.FieldError
	if v := params[cdrun.ParamTimeout]; v != "" {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 || d > cdrun.MaxTimeout {
			invalid = append(invalid, problem.FieldError{Field: "submitOptions.parameters." + cdrun.ParamTimeout,
				Detail: fmt.Sprintf("must be a duration from 1s to %s, such as 10m", cdrun.MaxTimeout)})
		}
	}
	resources := cdrun.DeleteResources
	if kind == cdrun.KindAppDelete {
		// The app names its Application and folder: the rules a rendered app follows.
		if msgs := validation.IsDNS1123Label(p.app); len(msgs) > 0 {
			invalid = append(invalid, problem.FieldError{Field: "app", Detail: strings.Join(msgs, "; ")})
		}
	} else {
		s, errs := manifest.Parse(manifest.Kind(kind), manifest.Target{Namespace: ns, App: p.app, AppLabel: f.cfg.AppLabel}, params)
		for _, e := range errs {
			field := "submitOptions.parameters." + e.Field
			switch e.Field {
			case "namespace", "app":
				field = e.Field
			case "kind":
				field = "resourceName"
			}
			invalid = append(invalid, problem.FieldError{Field: field, Detail: e.Detail})
		}
		if len(errs) == 0 {
			var err error
			if resources, err = manifest.Resources(s); err != nil {
				return nil, fmt.Errorf("render: %w", err)
			}
		}
	}
	if len(invalid) > 0 {
		return nil, problem.BadRequest("the run's parameters are invalid: nothing was committed", invalid...)
	}
	denied, err := cdrun.Denied(ctx, cdrun.Rights(kind, ns, p.app, resources), c.review)
	if err != nil {
		return nil, err
	}
	if len(denied) > 0 {
		return nil, problem.Forbidden("you may not deploy this run: " + cdrun.Missing(denied) + "; nothing was committed")
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

// review asks the API server whether the caller may do a (SelfSubjectAccessReview).
func (c *caller) review(ctx context.Context, a authorizationv1.ResourceAttributes) (bool, error) {
	r, err := c.Kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}
