// Package authz decides what the caller of a service may do, by asking the Kubernetes API
// server: TokenReview says who a bearer token belongs to, SubjectAccessReview whether that
// user may perform one action. Services that act with their own credentials on behalf of
// users (the SSE router shares one upstream among many users) check every user this way.
// Answers are remembered briefly, so that bursts of requests cost one review each.
package authz

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/util/flowcontrol"
)

// ErrNoToken means the request carries no bearer token.
var ErrNoToken = errors.New("no bearer token: send it in the Authorization header or the token cookie")

// ErrUnauthenticated means the API server did not accept the token.
var ErrUnauthenticated = errors.New("the bearer token was not accepted")

// ForbiddenError says which action the user may not perform.
type ForbiddenError struct {
	User       string
	Attributes Attributes
	Reason     string
}

func (e *ForbiddenError) Error() string {
	msg := fmt.Sprintf("user %q may not %s", e.User, e.Attributes)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// User is an authenticated user as the API server knows them.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// Attributes name one action on a resource, as in a SubjectAccessReview.
type Attributes struct {
	Namespace   string
	Verb        string
	Group       string
	Resource    string
	Subresource string
	Name        string
}

// String reads like the action, e.g. `get pods/log "web-1" in namespace "shop"`.
func (a Attributes) String() string {
	var b strings.Builder
	b.WriteString(a.Verb)
	b.WriteByte(' ')
	b.WriteString(a.Resource)
	if a.Group != "" {
		b.WriteByte('.')
		b.WriteString(a.Group)
	}
	if a.Subresource != "" {
		b.WriteByte('/')
		b.WriteString(a.Subresource)
	}
	if a.Name != "" {
		fmt.Fprintf(&b, " %q", a.Name)
	}
	if a.Namespace != "" {
		fmt.Fprintf(&b, " in namespace %q", a.Namespace)
	} else {
		b.WriteString(" cluster-wide")
	}
	return b.String()
}

// Options tune a Reviewer. Zero values take the defaults.
type Options struct {
	// TTL is how long an accepted token or an allowed action is remembered (default 10 s).
	TTL time.Duration
	// DenyTTL is how long a refusal is remembered (default 5 s): short, so that a grant
	// takes effect quickly, but not zero, so that a client retrying in a loop costs little.
	DenyTTL time.Duration
	// MaxEntries bounds each cache (default 10000).
	MaxEntries int
	// Audiences are passed to TokenReview; empty means the API server's own.
	Audiences []string
	// Timeout bounds one review request once sent (default 10 s).
	Timeout time.Duration
	// QPS and Burst pace review requests (defaults DefaultQPS, DefaultBurst); a negative
	// QPS sends them unpaced.
	QPS   float32
	Burst int
	// MaxInFlight bounds the review requests awaiting an answer (default DefaultMaxInFlight).
	MaxInFlight int
	// MaxWait bounds how long a review waits for the rate limit and an in-flight slot
	// before failing with ErrBusy (default DefaultMaxWait).
	MaxWait time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Reviewer authenticates and authorizes against one cluster.
type Reviewer struct {
	authn   authnclient.AuthenticationV1Interface
	authz   authzclient.AuthorizationV1Interface
	opts    Options
	limiter flowcontrol.RateLimiter
	slots   chan struct{} // one per review request in flight
	tokens  *answerCache[tokenAnswer]
	access  *answerCache[accessAnswer]
}

type tokenAnswer struct {
	user User
	ok   bool
}

type accessAnswer struct {
	allowed bool
	reason  string
}

// Authenticate returns the user a token belongs to, ErrNoToken for an empty token,
// ErrUnauthenticated when the API server rejects it, or another error when it cannot be
// asked (wrapping ErrBusy when too many reviews are waiting). Tokens are remembered only by
// their SHA-256.
func (r *Reviewer) Authenticate(ctx context.Context, token string) (User, error) {
	if token == "" {
		return User{}, ErrNoToken
	}
	sum := sha256.Sum256([]byte(token))
	ans, _, err := r.tokens.get(ctx, hex.EncodeToString(sum[:]),
		func(ctx context.Context) (tokenAnswer, time.Duration, error) {
			var tr *authnv1.TokenReview
			err := r.send(ctx, func(ctx context.Context) (err error) {
				tr, err = r.authn.TokenReviews().Create(ctx, &authnv1.TokenReview{
					Spec: authnv1.TokenReviewSpec{Token: token, Audiences: r.opts.Audiences},
				}, metav1.CreateOptions{})
				return err
			})
			if err != nil {
				return tokenAnswer{}, 0, fmt.Errorf("token review: %w", err)
			}
			if !tr.Status.Authenticated {
				return tokenAnswer{}, r.opts.DenyTTL, nil
			}
			u := tr.Status.User
			user := User{Name: u.Username, UID: u.UID, Groups: slices.Clone(u.Groups)}
			if len(u.Extra) > 0 {
				user.Extra = make(map[string][]string, len(u.Extra))
				for k, v := range u.Extra {
					user.Extra[k] = slices.Clone(v)
				}
			}
			return tokenAnswer{user: user, ok: true}, r.opts.TTL, nil
		})
	if err != nil {
		return User{}, err
	}
	if !ans.ok {
		return User{}, ErrUnauthenticated
	}
	return ans.user, nil
}

// Authorize returns nil when u may perform a, a *ForbiddenError when not, or another error
// when the API server cannot be asked (wrapping ErrBusy when too many reviews are waiting).
func (r *Reviewer) Authorize(ctx context.Context, u User, a Attributes) error {
	ans, _, err := r.access.get(ctx, accessKey(u, a),
		func(ctx context.Context) (accessAnswer, time.Duration, error) {
			sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
				User:   u.Name,
				UID:    u.UID,
				Groups: u.Groups,
				ResourceAttributes: &authzv1.ResourceAttributes{
					Namespace:   a.Namespace,
					Verb:        a.Verb,
					Group:       a.Group,
					Resource:    a.Resource,
					Subresource: a.Subresource,
					Name:        a.Name,
				},
			}}
			if len(u.Extra) > 0 {
				sar.Spec.Extra = make(map[string]authzv1.ExtraValue, len(u.Extra))
				for k, v := range u.Extra {
					sar.Spec.Extra[k] = v
				}
			}
			var res *authzv1.SubjectAccessReview
			err := r.send(ctx, func(ctx context.Context) (err error) {
				res, err = r.authz.SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
				return err
			})
			if err != nil {
				return accessAnswer{}, 0, fmt.Errorf("subject access review: %w", err)
			}
			if res.Status.Allowed && !res.Status.Denied {
				return accessAnswer{allowed: true}, r.opts.TTL, nil
			}
			reason := res.Status.Reason
			if reason == "" {
				reason = res.Status.EvaluationError
			}
			return accessAnswer{reason: reason}, r.opts.DenyTTL, nil
		})
	if err != nil {
		return err
	}
	if !ans.allowed {
		return &ForbiddenError{User: u.Name, Attributes: a, Reason: ans.reason}
	}
	return nil
}

// Check authenticates token and authorizes every action; it stops at the first refusal.
func (r *Reviewer) Check(ctx context.Context, token string, actions ...Attributes) (User, error) {
	u, err := r.Authenticate(ctx, token)
	if err != nil {
		return User{}, err
	}
	for _, a := range actions {
		if err := r.Authorize(ctx, u, a); err != nil {
			return u, err
		}
	}
	return u, nil
}

// accessKey identifies a question: the user with everything that may change the answer
// (groups and extra included), and the action.
func accessKey(u User, a Attributes) string {
	var b strings.Builder
	field := func(s string) {
		// Length-prefixed, so that no choice of values can make two questions collide.
		fmt.Fprintf(&b, "%d:%s|", len(s), s)
	}
	field(u.Name)
	field(u.UID)
	groups := slices.Clone(u.Groups)
	sort.Strings(groups)
	for _, g := range groups {
		field(g)
	}
	b.WriteString("#|")
	keys := make([]string, 0, len(u.Extra))
	for k := range u.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field(k)
		for _, v := range u.Extra[k] {
			field(v)
		}
		b.WriteString("#|")
	}
	for _, s := range []string{a.Namespace, a.Verb, a.Group, a.Resource, a.Subresource, a.Name} {
		field(s)
	}
	return b.String()
}

// TokenFromRequest returns the bearer token of a request: from the Authorization header,
// or else from the named cookie (browsers' EventSource cannot set headers). Tokens in the
// URL are never read: URLs end up in access logs.
func TokenFromRequest(r *http.Request, cookie string) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil {
			return c.Value
		}
	}
	return ""
}
