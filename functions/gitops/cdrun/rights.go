package cdrun

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// DeleteResources are what an app-delete removes, at least: an app service's objects.
var DeleteResources = []schema.GroupResource{{Group: "apps", Resource: "deployments"}, {Resource: "services"}}

// Rights are the access checks a run of kind needs: create and update (delete, for an
// app-delete) every resource it writes, in the namespace it writes to (a project's own;
// namespaces themselves at cluster scope). The function writes through Argo CD with its
// own rights: these checks keep a user from deploying where Kubernetes would not let them.
func Rights(kind, namespace, app string, resources []schema.GroupResource) []authorizationv1.ResourceAttributes {
	verbs := []string{"create", "update"}
	if kind == KindAppDelete {
		verbs = []string{"delete"}
	}
	target := namespace
	if kind == "project" {
		target = app
	}
	var out []authorizationv1.ResourceAttributes
	for _, r := range resources {
		ns := target
		if r.Group == "" && r.Resource == "namespaces" {
			ns = ""
		}
		for _, v := range verbs {
			out = append(out, authorizationv1.ResourceAttributes{Namespace: ns, Verb: v, Group: r.Group, Resource: r.Resource})
		}
	}
	return out
}

// Review answers one access check (a SelfSubjectAccessReview for the caller, a
// SubjectAccessReview for someone else).
type Review func(ctx context.Context, a authorizationv1.ResourceAttributes) (bool, error)

// Denied are the rights review refuses, each as "verb resource.group in namespace X".
func Denied(ctx context.Context, rights []authorizationv1.ResourceAttributes, review Review) ([]string, error) {
	var denied []string
	for _, a := range rights {
		ok, err := review(ctx, a)
		if err != nil {
			return nil, fmt.Errorf("access review: %w", err)
		}
		if ok {
			continue
		}
		what := a.Resource
		if a.Group != "" {
			what += "." + a.Group
		}
		if a.Namespace != "" {
			what += " in namespace " + a.Namespace
		}
		denied = append(denied, a.Verb+" "+what)
	}
	return denied, nil
}

// Missing says, for a message, which rights a run lacks.
func Missing(denied []string) string {
	return "it needs " + strings.Join(denied, ", ")
}
