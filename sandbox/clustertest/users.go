package clustertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// PodReaderTokens makes n distinct users: ServiceAccounts user-0 … user-<n-1> in ns,
// whose group may list and watch the namespace's pods, and returns their tokens.
func (e *Env) PodReaderTokens(t testing.TB, ns string, n int) []string {
	t.Helper()
	cs := e.AdminClientset(t)
	grantPodReaders(t, cs, ns)
	return serviceAccountTokens(t, cs, ns, n)
}

// grantPodReaders lets every ServiceAccount of ns list and watch its pods, and waits until
// the API server's authorizer has learnt it.
func grantPodReaders(t testing.TB, cs kubernetes.Interface, ns string) {
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
func serviceAccountTokens(t testing.TB, cs kubernetes.Interface, ns string, n int) []string {
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
