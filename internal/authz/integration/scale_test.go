package integration

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

const users = 1000

// reviewCounter counts the review requests a client sends.
type reviewCounter struct {
	next          http.RoundTripper
	tokenReviews  atomic.Int64
	accessReviews atomic.Int64
}

func (c *reviewCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	switch {
	case strings.HasSuffix(req.URL.Path, "/tokenreviews"):
		c.tokenReviews.Add(1)
	case strings.HasSuffix(req.URL.Path, "/subjectaccessreviews"):
		c.accessReviews.Add(1)
	}
	return c.next.RoundTrip(req)
}

// TestThousandUsersAtOnce checks a thousand distinct users (ServiceAccounts with their own
// tokens) arriving at the same moment, each needing list and watch on pods, with a
// reviewer of default options: every one is answered, none refused or turned away busy.
func TestThousandUsersAtOnce(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	grantPodReaders(t, cs, ns)
	tokens := serviceAccountTokens(t, cs, ns, users)

	cfg := rest.CopyConfig(env.Admin)
	counter := &reviewCounter{}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter }
	r, err := authz.NewReviewerForConfig(cfg, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	actions := []authz.Attributes{
		{Namespace: ns, Verb: "list", Resource: "pods"},
		{Namespace: ns, Verb: "watch", Resource: "pods"},
	}

	start := make(chan struct{})
	errs := make([]error, users)
	took := make([]time.Duration, users)
	var ready, wg sync.WaitGroup
	ready.Add(users)
	for i, tok := range tokens {
		wg.Go(func() {
			ready.Done()
			<-start
			began := time.Now()
			u, err := r.Check(context.Background(), tok, actions...)
			took[i] = time.Since(began)
			if want := fmt.Sprintf("system:serviceaccount:%s:user-%d", ns, i); err == nil && u.Name != want {
				err = fmt.Errorf("token of %s answered as %q", want, u.Name)
			}
			errs[i] = err
		})
	}
	ready.Wait()
	began := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(began)

	failed := 0
	for i, err := range errs {
		if err != nil {
			if failed < 5 {
				t.Errorf("user-%d: %v", i, err)
			}
			failed++
		}
	}
	slices.Sort(took)
	tr, sar := counter.tokenReviews.Load(), counter.accessReviews.Load()
	t.Logf("%d users checked concurrently in %s (p50 %s, p99 %s, max %s): %d errors, %d TokenReviews, %d SubjectAccessReviews",
		users, wall.Round(time.Millisecond), took[users/2].Round(time.Millisecond), took[users*99/100].Round(time.Millisecond),
		took[users-1].Round(time.Millisecond), failed, tr, sar)
	if failed > 0 {
		t.Fatalf("%d of %d users were not answered", failed, users)
	}
	// One review per token and per (user, action): the users are distinct, so nothing is
	// shared, and nothing is asked twice.
	if tr != users || sar != 2*users {
		t.Fatalf("%d TokenReviews and %d SubjectAccessReviews, want %d and %d", tr, sar, users, 2*users)
	}
}

// grantPodReaders lets every ServiceAccount of ns list and watch its pods, and waits until
// the API server's authorizer has learnt it.
func grantPodReaders(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	group := "system:serviceaccounts:" + ns
	_, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("role: %v", err)
	}
	_, err = cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-readers"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("role binding: %v", err)
	}
	for _, verb := range []string{"list", "watch"} {
		for {
			res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
				Spec: authzv1.SubjectAccessReviewSpec{
					User: "system:serviceaccount:" + ns + ":probe", Groups: []string{group},
					ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "pods"},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("probe %s: %v", verb, err)
			}
			if res.Status.Allowed {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s on pods still denied to %s", verb, group)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// serviceAccountTokens creates n ServiceAccounts user-0 … user-<n-1> in ns and returns a
// token of each, in order. It is setup: a few dozen requests at a time.
func serviceAccountTokens(t *testing.T, cs kubernetes.Interface, ns string, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tokens := make([]string, n)
	errs := make(chan error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := range next {
				errs <- func() error {
					name := fmt.Sprintf("user-%d", i)
					_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
						ObjectMeta: metav1.ObjectMeta{Name: name},
					}, metav1.CreateOptions{})
					if err != nil {
						return fmt.Errorf("service account %s: %w", name, err)
					}
					tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{
						Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))},
					}, metav1.CreateOptions{})
					if err != nil {
						return fmt.Errorf("token of %s: %w", name, err)
					}
					tokens[i] = tr.Status.Token
					return nil
				}()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tokens
}
