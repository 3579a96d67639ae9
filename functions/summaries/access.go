package summaries

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// accessChecker asks the API server, with the caller's own token, whether the caller may
// list pods in a namespace (a SelfSubjectAccessReview, which every authenticated user may
// create): the app list shows what the pods show, so it is readable by whoever may read
// them. Decisions are remembered briefly by token hash and namespace.
type accessChecker struct {
	// authz posts reviews with no credentials of its own: each request carries the
	// caller's token.
	authz rest.Interface
	ttl   time.Duration
	now   func() time.Time

	mu        sync.Mutex
	decisions map[accessKey]decision
}

type accessKey struct {
	token     [sha256.Size]byte
	namespace string
}

type decision struct {
	allowed bool
	reason  string
	expires time.Time
}

// maxDecisions bounds the decisions remembered, for every caller together (the workflows
// family keeps 64 per cached caller); past it they are all forgotten.
const maxDecisions = 10000

// deniedTTL is how long a refusal is remembered at most: short, so a grant shows quickly.
const deniedTTL = 5 * time.Second

func newAccessChecker(base *rest.Config, ttl time.Duration) (*accessChecker, error) {
	// The base config contributes the server and how to trust it, never its credentials.
	anon := rest.AnonymousClientConfig(base)
	anon.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(anon)
	if err != nil {
		return nil, fmt.Errorf("API server client: %w", err)
	}
	return &accessChecker{authz: cs.AuthorizationV1().RESTClient(), ttl: ttl, now: time.Now, decisions: map[accessKey]decision{}}, nil
}

// canListPods returns nil when the token's user may list pods in namespace, else the
// problem to answer: 401 for a token the API server does not accept, 403 for a refusal.
func (a *accessChecker) canListPods(ctx context.Context, token, namespace string) error {
	key := accessKey{sha256.Sum256([]byte(token)), namespace}
	now := a.now()
	a.mu.Lock()
	d, ok := a.decisions[key]
	a.mu.Unlock()
	if !ok || !now.Before(d.expires) {
		var err error
		d, err = a.review(ctx, token, namespace)
		if err != nil {
			return err
		}
		ttl := a.ttl
		if !d.allowed {
			ttl = min(ttl, deniedTTL)
		}
		if ttl > 0 {
			d.expires = now.Add(ttl)
			a.mu.Lock()
			if len(a.decisions) >= maxDecisions {
				clear(a.decisions)
			}
			a.decisions[key] = d
			a.mu.Unlock()
		}
	}
	if !d.allowed {
		msg := fmt.Sprintf("you may not list pods in namespace %q, so you may not see its apps", namespace)
		if d.reason != "" {
			msg += ": " + d.reason
		}
		return problem.Forbidden(msg)
	}
	return nil
}

func (a *accessChecker) review(ctx context.Context, token, namespace string) (decision, error) {
	var r authorizationv1.SelfSubjectAccessReview
	err := a.authz.Post().Resource("selfsubjectaccessreviews").SetHeader("Authorization", "Bearer "+token).
		Body(&authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: "list", Resource: "pods",
			}},
		}).Do(ctx).Into(&r)
	switch {
	case apierrors.IsUnauthorized(err):
		return decision{}, problem.Unauthorized("the Kubernetes API server did not accept the bearer token")
	case apierrors.IsForbidden(err):
		// Not even allowed to ask: refused, like a denial.
		return decision{reason: "the token may not create access reviews"}, nil
	case apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err):
		p := problem.New(http.StatusServiceUnavailable, "the Kubernetes API server is busy: ask again shortly")
		p.RetryAfter = 1
		return decision{}, p
	case err != nil:
		// The caller is told what the API server said, never its address.
		msg := "the Kubernetes API server did not answer the access review"
		var st apierrors.APIStatus
		if errors.As(err, &st) {
			msg = fmt.Sprintf("the Kubernetes API server answered the access review with %d %s", st.Status().Code, st.Status().Reason)
		}
		return decision{}, problem.New(http.StatusBadGateway, msg)
	}
	reason := r.Status.Reason
	if reason == "" {
		reason = r.Status.EvaluationError
	}
	return decision{allowed: r.Status.Allowed && !r.Status.Denied, reason: reason}, nil
}
