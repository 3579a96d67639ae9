package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/client-go/kubernetes"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// ErrBusy means a review could not be sent within Options.MaxWait: too many were waiting
// for the rate limit or for an in-flight slot. The answer is unknown, not a refusal; the
// caller should ask the client to retry (503 with Retry-After).
var ErrBusy = errors.New("too many access reviews at once")

// Defaults of the review client's limits. At 200 requests a second, a thousand users
// arriving together (two or three reviews each, the rest shared or cached) are all
// answered within about 15 s, inside the default MaxWait.
const (
	DefaultQPS         = 200
	DefaultBurst       = 400
	DefaultMaxWait     = 20 * time.Second
	DefaultMaxInFlight = 64
)

// NewReviewer asks client's API server; the client's credentials need `create` on
// tokenreviews and subjectaccessreviews (the system:auth-delegator ClusterRole). The
// reviewer's own limits (QPS, Burst, MaxInFlight) apply on top of whatever limits client
// has: a client shared with other work may still make reviews queue behind that work,
// within Timeout. Services under load use NewReviewerForConfig instead.
func NewReviewer(client kubernetes.Interface, opts Options) *Reviewer {
	return newReviewer(client.AuthenticationV1(), client.AuthorizationV1(), opts)
}

// NewReviewerForConfig asks the API server of cfg through a client of its own: its own
// connections and its own rate limit (Options.QPS and Burst), so that reviews never wait
// behind the service's other API calls, nor those behind reviews. cfg is not changed.
func NewReviewerForConfig(cfg *rest.Config, opts Options) (*Reviewer, error) {
	if cfg == nil {
		return nil, errors.New("review client: no rest config")
	}
	cfg = rest.CopyConfig(cfg)
	// The reviewer paces requests itself, with a wait bounded by MaxWait rather than by the
	// request timeout; a second limiter in the client would queue them again.
	cfg.RateLimiter = nil
	cfg.QPS = -1
	// client-go shares one transport among configs with equal TLS settings; a config with
	// a Proxy function is never shared, so this gives the reviews connections of their own.
	if cfg.Proxy == nil && cfg.Transport == nil {
		cfg.Proxy = http.ProxyFromEnvironment
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("review client: %w", err)
	}
	authn, err := authnclient.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("token review client: %w", err)
	}
	authz, err := authzclient.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("subject access review client: %w", err)
	}
	return newReviewer(authn, authz, opts), nil
}

func newReviewer(authn authnclient.AuthenticationV1Interface, authz authzclient.AuthorizationV1Interface, opts Options) *Reviewer {
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.DenyTTL <= 0 {
		opts.DenyTTL = 5 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.QPS == 0 {
		opts.QPS = DefaultQPS
	}
	if opts.Burst <= 0 {
		opts.Burst = max(DefaultBurst, int(opts.QPS))
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	limiter := flowcontrol.NewFakeAlwaysRateLimiter()
	if opts.QPS > 0 {
		limiter = flowcontrol.NewTokenBucketRateLimiter(opts.QPS, opts.Burst)
	}
	return &Reviewer{
		authn:   authn,
		authz:   authz,
		opts:    opts,
		limiter: limiter,
		slots:   make(chan struct{}, opts.MaxInFlight),
		tokens:  newAnswerCache[tokenAnswer](opts.MaxEntries, opts.Now),
		access:  newAnswerCache[accessAnswer](opts.MaxEntries, opts.Now),
	}
}

// send makes one review request: it waits up to MaxWait for the rate limiter and an
// in-flight slot (a burst waits its turn rather than failing), then gives the request
// itself up to Timeout. Past MaxWait it fails with ErrBusy.
func (r *Reviewer) send(ctx context.Context, request func(ctx context.Context) error) error {
	wctx, cancel := context.WithTimeout(ctx, r.opts.MaxWait)
	defer cancel()
	// The token bucket fails at once when the wait would outlast wctx, so that a hopeless
	// request is refused quickly rather than at the end of MaxWait.
	if err := r.limiter.Wait(wctx); err != nil {
		return fmt.Errorf("%w: rate limit of %g reviews a second: %w", ErrBusy, r.opts.QPS, err)
	}
	select {
	case r.slots <- struct{}{}:
	case <-wctx.Done():
		return fmt.Errorf("%w: %d reviews in flight for %s", ErrBusy, cap(r.slots), r.opts.MaxWait)
	}
	defer func() { <-r.slots }()
	rctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	return request(rctx)
}
