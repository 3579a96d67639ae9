package authz

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// fakeAPI answers TokenReviews from a token table and SubjectAccessReviews from a set of
// allowed (user, verb, resource, namespace) tuples, counting the requests.
type fakeAPI struct {
	tokens  map[string]string   // token → user
	groups  map[string][]string // token → groups, when not the default ones
	allowed map[string]bool     // user|verb|resource|namespace, or group:name|verb|...
	fail    atomic.Bool
	delay   time.Duration
	// block, when set, holds every review until it is closed.
	block chan struct{}

	tokenReviews  atomic.Int64
	accessReviews atomic.Int64
}

func (f *fakeAPI) client() *fake.Clientset {
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.tokenReviews.Add(1)
		time.Sleep(f.delay)
		if f.block != nil {
			<-f.block
		}
		if f.fail.Load() {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if user, ok := f.tokens[tr.Spec.Token]; ok {
			groups, ok := f.groups[tr.Spec.Token]
			if !ok {
				groups = []string{"dwp:developers", "system:authenticated"}
			}
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
				Username: user, UID: "uid-" + user, Groups: groups,
			}}
		}
		return true, tr, nil
	})
	cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.accessReviews.Add(1)
		if f.block != nil {
			<-f.block
		}
		if f.fail.Load() {
			return true, nil, errors.New("connection refused")
		}
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		ra := sar.Spec.ResourceAttributes
		action := "|" + ra.Verb + "|" + ra.Resource + "/" + ra.Subresource + "|" + ra.Namespace
		sar.Status.Allowed = f.allowed[sar.Spec.User+action]
		for _, g := range sar.Spec.Groups {
			sar.Status.Allowed = sar.Status.Allowed || f.allowed["group:"+g+action]
		}
		if !sar.Status.Allowed {
			sar.Status.Reason = "no RBAC rule"
		}
		return true, sar, nil
	})
	return cs
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFake() *fakeAPI {
	return &fakeAPI{
		tokens:  map[string]string{"tok-alice": "alice", "tok-carol": "carol"},
		allowed: map[string]bool{"alice|get|pods/log|shop": true, "alice|list|pods/|shop": true},
	}
}

func TestAuthenticate(t *testing.T) {
	api := newFake()
	clk := &clock{now: time.Unix(1000, 0)}
	r := NewReviewer(api.client(), Options{TTL: 10 * time.Second, DenyTTL: 2 * time.Second, Now: clk.Now})
	ctx := context.Background()

	tests := []struct {
		name, token, user string
		err               error
	}{
		{"valid", "tok-alice", "alice", nil},
		{"unknown token", "bogus", "", ErrUnauthenticated},
		{"empty token", "", "", ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := r.Authenticate(ctx, tt.token)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if u.Name != tt.user {
				t.Fatalf("user = %q, want %q", u.Name, tt.user)
			}
		})
	}
	if n := api.tokenReviews.Load(); n != 2 {
		t.Fatalf("token reviews = %d, want 2 (the empty token is never sent)", n)
	}

	// Within the TTL, answers (and refusals, within theirs) are reused.
	_, _ = r.Authenticate(ctx, "tok-alice")
	_, _ = r.Authenticate(ctx, "bogus")
	if n := api.tokenReviews.Load(); n != 2 {
		t.Fatalf("token reviews after cached asks = %d, want 2", n)
	}
	// The refusal expires first.
	clk.Advance(3 * time.Second)
	_, _ = r.Authenticate(ctx, "tok-alice")
	_, _ = r.Authenticate(ctx, "bogus")
	if n := api.tokenReviews.Load(); n != 3 {
		t.Fatalf("token reviews after deny TTL = %d, want 3", n)
	}
	clk.Advance(8 * time.Second)
	_, _ = r.Authenticate(ctx, "tok-alice")
	if n := api.tokenReviews.Load(); n != 4 {
		t.Fatalf("token reviews after TTL = %d, want 4", n)
	}
}

func TestAuthenticateErrorsAreNotCached(t *testing.T) {
	api := newFake()
	r := NewReviewer(api.client(), Options{})
	api.fail.Store(true)
	_, err := r.Authenticate(context.Background(), "tok-alice")
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("err = %v, want an API failure distinct from ErrUnauthenticated", err)
	}
	api.fail.Store(false)
	if u, err := r.Authenticate(context.Background(), "tok-alice"); err != nil || u.Name != "alice" {
		t.Fatalf("after recovery: %v %v", u, err)
	}
}

func TestAuthenticateSharesConcurrentReviews(t *testing.T) {
	api := newFake()
	api.delay = 50 * time.Millisecond
	r := NewReviewer(api.client(), Options{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := r.Authenticate(context.Background(), "tok-alice"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := api.tokenReviews.Load(); n != 1 {
		t.Fatalf("50 concurrent asks made %d token reviews, want 1", n)
	}
}

func TestCheck(t *testing.T) {
	api := newFake()
	r := NewReviewer(api.client(), Options{})
	ctx := context.Background()
	logs := Attributes{Namespace: "shop", Verb: "get", Resource: "pods", Subresource: "log"}
	list := Attributes{Namespace: "shop", Verb: "list", Resource: "pods"}
	other := Attributes{Namespace: "bank", Verb: "list", Resource: "pods"}

	tests := []struct {
		name      string
		token     string
		actions   []Attributes
		forbidden bool
		err       error
	}{
		{"allowed", "tok-alice", []Attributes{logs, list}, false, nil},
		{"other namespace", "tok-alice", []Attributes{list, other}, true, nil},
		{"no rights", "tok-carol", []Attributes{list}, true, nil},
		{"bad token", "nope", []Attributes{list}, false, ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Check(ctx, tt.token, tt.actions...)
			var fe *ForbiddenError
			if got := errors.As(err, &fe); got != tt.forbidden {
				t.Fatalf("forbidden = %v (%v), want %v", got, err, tt.forbidden)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if !tt.forbidden && tt.err == nil && err != nil {
				t.Fatalf("unexpected %v", err)
			}
			if fe != nil && fe.Reason != "no RBAC rule" {
				t.Fatalf("reason = %q", fe.Reason)
			}
		})
	}
	before := api.accessReviews.Load()
	if _, err := r.Check(ctx, "tok-alice", logs, list); err != nil {
		t.Fatal(err)
	}
	if n := api.accessReviews.Load(); n != before {
		t.Fatalf("repeated check made %d more reviews, want 0", n-before)
	}
}

func TestCacheIsBounded(t *testing.T) {
	api := newFake()
	r := NewReviewer(api.client(), Options{MaxEntries: 3})
	u := User{Name: "alice"}
	for _, ns := range []string{"a", "b", "c", "d", "e"} {
		_ = r.Authorize(context.Background(), u, Attributes{Namespace: ns, Verb: "list", Resource: "pods"})
	}
	if n := r.access.len(); n != 3 {
		t.Fatalf("cache holds %d answers, want 3", n)
	}
	// "a" was evicted (least recently used); "e" is still there.
	before := api.accessReviews.Load()
	_ = r.Authorize(context.Background(), u, Attributes{Namespace: "e", Verb: "list", Resource: "pods"})
	_ = r.Authorize(context.Background(), u, Attributes{Namespace: "a", Verb: "list", Resource: "pods"})
	if n := api.accessReviews.Load() - before; n != 1 {
		t.Fatalf("reviews = %d, want 1 (only the evicted answer asked again)", n)
	}
}

func TestAccessKeyDistinguishesUsers(t *testing.T) {
	a := Attributes{Namespace: "ns", Verb: "get", Resource: "pods"}
	keys := map[string]string{
		"plain":      accessKey(User{Name: "alice"}, a),
		"group":      accessKey(User{Name: "alice", Groups: []string{"admins"}}, a),
		"extra":      accessKey(User{Name: "alice", Extra: map[string][]string{"scopes": {"x"}}}, a),
		"split name": accessKey(User{Name: "ali", UID: "ce"}, a),
		"other ns":   accessKey(User{Name: "alice"}, Attributes{Namespace: "ns2", Verb: "get", Resource: "pods"}),
	}
	seen := map[string]string{}
	for name, k := range keys {
		if prev, dup := seen[k]; dup {
			t.Fatalf("%s and %s share a cache key", name, prev)
		}
		seen[k] = name
	}
	// Group order does not matter.
	if accessKey(User{Name: "u", Groups: []string{"a", "b"}}, a) != accessKey(User{Name: "u", Groups: []string{"b", "a"}}, a) {
		t.Fatal("group order changes the key")
	}
}

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		header string
		cookie string
		want   string
	}{
		{"bearer header", "Bearer abc", "", "abc"},
		{"case-insensitive scheme", "bearer abc", "", "abc"},
		{"header wins over cookie", "Bearer abc", "fromcookie", "abc"},
		{"cookie", "", "fromcookie", "fromcookie"},
		{"basic auth is not a token", "Basic dXNlcjpwYXNz", "fromcookie", ""},
		{"nothing", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/x?token=never&access_token=never", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if tt.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "dwp_token", Value: tt.cookie})
			}
			if got := TokenFromRequest(r, "dwp_token"); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	f.Add("Bearer abc", "cookie")
	f.Add("", "c")
	f.Add("Bearer", "")
	f.Add("bEaReR   x y ", "")
	f.Fuzz(func(t *testing.T, header, cookie string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", header)
		r.Header.Set("Cookie", "dwp_token="+cookie)
		tok := TokenFromRequest(r, "dwp_token")
		if r.Header.Get("Authorization") == "" && tok != "" {
			if c, err := r.Cookie("dwp_token"); err != nil || c.Value != tok {
				t.Fatalf("token %q neither from header nor cookie", tok)
			}
		}
	})
}
