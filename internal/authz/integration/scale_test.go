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
	tokens := env.PodReaderTokens(t, ns, users)

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
