package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a few seconds have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TestConcurrentIdenticalReviewsShareOneRequest holds the first request until every asker
// has joined it: N askers, one request each, and (since failures are not cached) all of
// them get that request's failure too.
func TestConcurrentIdenticalReviewsShareOneRequest(t *testing.T) {
	const n = 200
	alice := User{Name: "alice", UID: "uid-alice", Groups: []string{"dwp:developers"}}
	list := Attributes{Namespace: "shop", Verb: "list", Resource: "pods"}
	tests := []struct {
		name    string
		fail    bool
		ask     func(r *Reviewer) error
		askers  func(r *Reviewer) int
		reviews func(api *fakeAPI) int64
	}{
		{
			name: "token review",
			ask: func(r *Reviewer) error {
				u, err := r.Authenticate(context.Background(), "tok-alice")
				if err == nil && u.Name != "alice" {
					err = fmt.Errorf("user %q", u.Name)
				}
				return err
			},
			askers:  func(r *Reviewer) int { return r.tokens.askers(tokenKey("tok-alice")) },
			reviews: func(api *fakeAPI) int64 { return api.tokenReviews.Load() },
		},
		{
			name:    "access review",
			ask:     func(r *Reviewer) error { return r.Authorize(context.Background(), alice, list) },
			askers:  func(r *Reviewer) int { return r.access.askers(accessKey(alice, list)) },
			reviews: func(api *fakeAPI) int64 { return api.accessReviews.Load() },
		},
		{
			name:    "failing token review",
			fail:    true,
			ask:     func(r *Reviewer) error { _, err := r.Authenticate(context.Background(), "tok-alice"); return err },
			askers:  func(r *Reviewer) int { return r.tokens.askers(tokenKey("tok-alice")) },
			reviews: func(api *fakeAPI) int64 { return api.tokenReviews.Load() },
		},
		{
			name:    "failing access review",
			fail:    true,
			ask:     func(r *Reviewer) error { return r.Authorize(context.Background(), alice, list) },
			askers:  func(r *Reviewer) int { return r.access.askers(accessKey(alice, list)) },
			reviews: func(api *fakeAPI) int64 { return api.accessReviews.Load() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFake()
			api.block = make(chan struct{})
			api.fail.Store(tt.fail)
			r := NewReviewer(api.client(), Options{})
			start := make(chan struct{})
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					<-start
					errs <- tt.ask(r)
				})
			}
			close(start)
			waitFor(t, "every asker to join the request", func() bool { return tt.askers(r) == n })
			close(api.block)
			wg.Wait()
			close(errs)
			failed := 0
			for err := range errs {
				if err != nil {
					failed++
					if !tt.fail {
						t.Error(err)
					}
				}
			}
			if tt.fail && failed != n {
				t.Errorf("%d of %d askers got the failure", failed, n)
			}
			if got := tt.reviews(api); got != 1 {
				t.Fatalf("%d concurrent askers made %d requests, want 1", n, got)
			}
		})
	}
}

// TestDistinctUsersGetTheirOwnAnswers asks for many users at once: one review each, and
// nobody gets another's identity or rights.
func TestDistinctUsersGetTheirOwnAnswers(t *testing.T) {
	const n = 300
	api := newFake()
	api.tokens = map[string]string{}
	api.allowed = map[string]bool{}
	for i := range n {
		user := fmt.Sprintf("user-%d", i)
		api.tokens["tok-"+user] = user
		if i%2 == 0 {
			api.allowed[user+"|list|pods/|shop"] = true
		}
	}
	r := NewReviewer(api.client(), Options{})
	list := Attributes{Namespace: "shop", Verb: "list", Resource: "pods"}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			user := fmt.Sprintf("user-%d", i)
			u, err := r.Check(context.Background(), "tok-"+user, list)
			if u.Name != user {
				t.Errorf("token of %s answered %q", user, u.Name)
			}
			var fe *ForbiddenError
			if allowed := i%2 == 0; allowed && err != nil || !allowed && !errors.As(err, &fe) {
				t.Errorf("%s: allowed %v, got %v", user, allowed, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if tr, sar := api.tokenReviews.Load(), api.accessReviews.Load(); tr != n || sar != n {
		t.Fatalf("%d users made %d token and %d access reviews, want %d each", n, tr, sar, n)
	}
}

// TestAnswersDependOnGroups: two tokens of users with one name but different groups, and
// rights granted to a group, must not share answers, whichever is asked first.
func TestAnswersDependOnGroups(t *testing.T) {
	list := Attributes{Namespace: "shop", Verb: "list", Resource: "pods"}
	for _, adminFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("admin first %v", adminFirst), func(t *testing.T) {
			api := newFake()
			api.tokens = map[string]string{"tok-bob-admin": "bob", "tok-bob": "bob"}
			api.groups = map[string][]string{"tok-bob-admin": {"admins", "system:authenticated"}, "tok-bob": {"system:authenticated"}}
			api.allowed = map[string]bool{"group:admins|list|pods/|shop": true}
			r := NewReviewer(api.client(), Options{})
			tokens := []string{"tok-bob-admin", "tok-bob"}
			if !adminFirst {
				tokens[0], tokens[1] = tokens[1], tokens[0]
			}
			for range 2 { // the second round is answered from the caches
				for _, tok := range tokens {
					u, err := r.Check(context.Background(), tok, list)
					var fe *ForbiddenError
					switch {
					case tok == "tok-bob-admin" && (err != nil || len(u.Groups) != 2):
						t.Fatalf("admin bob: %+v, %v", u, err)
					case tok == "tok-bob" && (!errors.As(err, &fe) || len(u.Groups) != 1):
						t.Fatalf("plain bob: %+v, %v; want forbidden", u, err)
					}
				}
			}
			if tr, sar := api.tokenReviews.Load(), api.accessReviews.Load(); tr != 2 || sar != 2 {
				t.Fatalf("%d token and %d access reviews, want 2 each", tr, sar)
			}
		})
	}
}

// TestBusyWaitsBounded: a review waits for the rate limit and a request slot up to MaxWait;
// beyond that it fails with ErrBusy, which is neither a refusal nor remembered.
func TestBusyWaitsBounded(t *testing.T) {
	list := Attributes{Namespace: "shop", Verb: "list", Resource: "pods"}
	tests := []struct {
		name string
		opts Options
		// hold keeps the first request in flight until the second has been asked.
		hold bool
		// minWait and maxWait bound how long the refused ask took.
		minWait, maxWait time.Duration
	}{
		{"rate limit", Options{QPS: 0.5, Burst: 1, MaxWait: time.Second}, false, 0, 500 * time.Millisecond},
		{"in-flight limit", Options{QPS: -1, MaxInFlight: 1, MaxWait: 200 * time.Millisecond}, true, 150 * time.Millisecond, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newFake()
			r := NewReviewer(api.client(), tt.opts)
			first := make(chan error, 1)
			if tt.hold {
				api.block = make(chan struct{})
				go func() { _, err := r.Authenticate(context.Background(), "tok-alice"); first <- err }()
				waitFor(t, "the first review to be sent", func() bool { return api.tokenReviews.Load() == 1 })
			} else {
				_, err := r.Authenticate(context.Background(), "tok-alice")
				first <- err
			}
			began := time.Now()
			_, err := r.Check(context.Background(), "tok-carol", list)
			took := time.Since(began)
			if !errors.Is(err, ErrBusy) || errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("err = %v, want ErrBusy", err)
			}
			var fe *ForbiddenError
			if errors.As(err, &fe) {
				t.Fatalf("busy reported as a refusal: %v", err)
			}
			if took < tt.minWait || took > tt.maxWait {
				t.Errorf("refused after %s, want %s to %s", took, tt.minWait, tt.maxWait)
			}
			if tt.hold {
				close(api.block)
			}
			if err := <-first; err != nil {
				t.Fatalf("first review: %v", err)
			}
			if n := api.tokenReviews.Load(); n != 1 {
				t.Fatalf("token reviews = %d, want 1 (the refused one never sent)", n)
			}
		})
	}
}

// TestBurstWaitsItsTurn: more distinct reviews than the burst allows are paced, not refused,
// while the wait fits in MaxWait.
func TestBurstWaitsItsTurn(t *testing.T) {
	const n = 20
	api := newFake()
	api.tokens = map[string]string{}
	for i := range n {
		api.tokens[fmt.Sprintf("tok-%d", i)] = fmt.Sprintf("user-%d", i)
	}
	r := NewReviewer(api.client(), Options{QPS: 50, Burst: 5, MaxInFlight: 2, MaxWait: 5 * time.Second})
	began := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := r.Authenticate(context.Background(), fmt.Sprintf("tok-%d", i)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 5 at once, then 15 at 50 a second: about 300 ms.
	if took := time.Since(began); took < 250*time.Millisecond {
		t.Errorf("%d reviews took %s: not paced", n, took)
	}
	if got := api.tokenReviews.Load(); got != n {
		t.Fatalf("token reviews = %d, want %d", got, n)
	}
}

// TestAskerLeavesRequestGoesOn: an asker whose context ends stops waiting, but the request
// it started still completes and its answer serves the next asker.
func TestAskerLeavesRequestGoesOn(t *testing.T) {
	api := newFake()
	api.block = make(chan struct{})
	r := NewReviewer(api.client(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := r.Authenticate(ctx, "tok-alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the asker's deadline", err)
	}
	close(api.block)
	waitFor(t, "the request to complete", func() bool { return r.tokens.len() == 1 })
	if u, err := r.Authenticate(context.Background(), "tok-alice"); err != nil || u.Name != "alice" {
		t.Fatalf("%+v, %v", u, err)
	}
	if n := api.tokenReviews.Load(); n != 1 {
		t.Fatalf("token reviews = %d, want 1", n)
	}
}
