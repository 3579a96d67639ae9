package summaries

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// accessChecker asks the API server, with the caller's own token, whether the caller may
// list pods in a namespace (a SelfSubjectAccessReview, which every authenticated user may
// create): the app list shows what the pods show, so it is readable by whoever may read
// them. Decisions are remembered briefly by token hash and namespace.
type accessChecker struct {
	client *http.Client
	url    string
	ttl    time.Duration
	now    func() time.Time

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

// maxDecisions bounds the decisions remembered; past it they are all forgotten.
const maxDecisions = 10000

// deniedTTL is how long a refusal is remembered at most: short, so a grant shows quickly.
const deniedTTL = 5 * time.Second

func newAccessChecker(base *rest.Config, ttl time.Duration) (*accessChecker, error) {
	// The base config contributes the server and how to trust it, never its credentials.
	anon := rest.AnonymousClientConfig(base)
	anon.Timeout = 10 * time.Second
	hc, err := rest.HTTPClientFor(anon)
	if err != nil {
		return nil, fmt.Errorf("API server client: %w", err)
	}
	host := strings.TrimRight(anon.Host, "/")
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	return &accessChecker{
		client: hc, url: host + strings.TrimRight(anon.APIPath, "/") + "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
		ttl: ttl, now: time.Now, decisions: map[accessKey]decision{},
	}, nil
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

var metaTypeSSAR = metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"}

func (a *accessChecker) review(ctx context.Context, token, namespace string) (decision, error) {
	body, err := json.Marshal(&authorizationv1.SelfSubjectAccessReview{
		TypeMeta: metaTypeSSAR,
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: "list", Resource: "pods",
		}},
	})
	if err != nil {
		return decision{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return decision{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return decision{}, fmt.Errorf("access review: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return decision{}, fmt.Errorf("access review: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return decision{}, problem.Unauthorized("the Kubernetes API server did not accept the bearer token")
	case resp.StatusCode == http.StatusForbidden:
		// Not even allowed to ask: refused, like a denial.
		return decision{reason: "the token may not create access reviews"}, nil
	case resp.StatusCode/100 != 2:
		p := problem.Newf(http.StatusBadGateway, "the Kubernetes API server answered the access review with %s", resp.Status)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			p.Status, p.RetryAfter = http.StatusServiceUnavailable, 1
		}
		return decision{}, p
	}
	var r authorizationv1.SelfSubjectAccessReview
	if err := json.Unmarshal(out, &r); err != nil {
		return decision{}, problem.Newf(http.StatusBadGateway, "the Kubernetes API server's access review is not readable: %v", err)
	}
	reason := r.Status.Reason
	if reason == "" {
		reason = r.Status.EvaluationError
	}
	return decision{allowed: r.Status.Allowed && !r.Status.Denied, reason: reason}, nil
}
