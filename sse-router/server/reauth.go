package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

// Open streams follow the user's rights: a right checked once at the start would let a
// user whose RoleBinding is deleted watch on for as long as the connection lasts. Every
// open stream (every subscription of a multiplexed one) is checked again at a bounded
// interval, with the same cached TokenReview and SubjectAccessReview as a new request.
//
// The router holds ~20k streams, so there is no timer per stream: one goroutine turns a
// wheel of buckets; a stream sits in one bucket from its start to its end, and the
// bucket's streams are checked each time the wheel passes it (once per period), spread
// over the period rather than all at once.

// recheckWorkers bounds the checks in flight at once (each may cost a review).
const recheckWorkers = 16

// rechecker is the wheel.
type rechecker struct {
	slot time.Duration

	mu      sync.Mutex
	buckets []map[*watched]struct{}
	visited int // buckets visited since the start; visited % len(buckets) is the next
}

// watched is one stream on the wheel. check runs on the wheel's goroutines (never two at
// once for the same stream: a bucket's checks end before the next bucket's start).
type watched struct {
	bucket int
	check  func(ctx context.Context)
}

// newRechecker makes a wheel that comes back to each stream every period.
func newRechecker(period time.Duration) *rechecker {
	slot := max(period/64, 50*time.Millisecond)
	n := max(int(period/slot), 1)
	r := &rechecker{slot: period / time.Duration(n), buckets: make([]map[*watched]struct{}, n)}
	for i := range r.buckets {
		r.buckets[i] = map[*watched]struct{}{}
	}
	return r
}

// add puts a stream in the bucket just visited: its first check comes one period later,
// within a slot.
func (r *rechecker) add(check func(ctx context.Context)) *watched {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.buckets)
	w := &watched{bucket: (r.visited + n - 1) % n, check: check}
	r.buckets[w.bucket][w] = struct{}{}
	return w
}

func (r *rechecker) remove(w *watched) {
	r.mu.Lock()
	delete(r.buckets[w.bucket], w)
	r.mu.Unlock()
}

// run turns the wheel until ctx ends. A turn slower than a slot (a slow API server) does
// not skip buckets: the wheel catches up with the clock.
func (r *rechecker) run(ctx context.Context) {
	start := time.Now()
	tick := time.NewTicker(r.slot)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int(time.Since(start) / r.slot)
		for {
			r.mu.Lock()
			if r.visited >= due {
				r.mu.Unlock()
				break
			}
			b := r.buckets[r.visited%len(r.buckets)]
			checks := make([]func(context.Context), 0, len(b))
			for w := range b {
				checks = append(checks, w.check)
			}
			r.visited++
			r.mu.Unlock()
			runChecks(ctx, checks)
		}
	}
}

func runChecks(ctx context.Context, checks []func(context.Context)) {
	sem := make(chan struct{}, recheckWorkers)
	var wg sync.WaitGroup
	for _, c := range checks {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c(ctx)
		})
	}
	wg.Wait()
}

// grant is what a stream was opened with, to be checked again.
type grant struct {
	token   string
	expires time.Time // the token's own expiry, when it tells (zero: unknown)
	opened  time.Time
}

func newGrant(token string) grant {
	return grant{token: token, expires: tokenExpiry(token), opened: time.Now()}
}

// outlived says whether the stream reached DWP_MAX_STREAM_LIFETIME.
func (s *Server) outlived(g grant) bool {
	return s.cfg.MaxStreamLifetime > 0 && time.Since(g.opened) >= s.cfg.MaxStreamLifetime
}

// recheck checks g's token (and actions) again with rv, the stream's cluster. It returns the final error event's
// payload and true when the stream must end; an API server that cannot be asked keeps
// the stream open (logged): streams do not all end because of one failed review.
func (s *Server) recheck(ctx context.Context, g grant, rv *authz.Reviewer, actions ...authz.Attributes) (api.ErrorPayload, bool) {
	if !g.expires.IsZero() && !time.Now().Before(g.expires) {
		return unauthenticatedPayload("your token expired: sign in again"), true
	}
	u, err := rv.Authenticate(ctx, g.token)
	if err == nil && len(actions) > 0 {
		for _, a := range actions {
			if err = rv.Authorize(ctx, u, a); err != nil {
				break
			}
		}
	}
	var fe *authz.ForbiddenError
	switch {
	case err == nil:
		return api.ErrorPayload{}, false
	case errors.Is(err, authz.ErrUnauthenticated), errors.Is(err, authz.ErrNoToken):
		return unauthenticatedPayload("your token is no longer accepted: sign in again"), true
	case errors.As(err, &fe):
		return api.ErrorPayload{
			Type: api.EventError, Status: http.StatusForbidden, Code: api.CodeForbidden, Reason: "Forbidden",
			Message: "access to this stream was revoked: " + fe.Error(),
		}, true
	}
	if ctx.Err() == nil {
		s.log.Warn("re-checking a stream's access failed; it stays open until the next check", "err", err)
	}
	return api.ErrorPayload{}, false
}

func unauthenticatedPayload(msg string) api.ErrorPayload {
	return api.ErrorPayload{
		Type: api.EventError, Status: http.StatusUnauthorized, Code: api.CodeUnauthenticated, Reason: "Unauthorized", Message: msg,
	}
}

// tokenExpiry reads the exp claim of a JWT (ServiceAccount and OIDC tokens), so that a
// stream ends when its token does rather than when a cached TokenReview lapses. The
// claim is read unverified: it is only used after the API server accepted the token, and
// only to end a stream sooner.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 || exp > 1<<40 {
		return time.Time{}
	}
	return time.Unix(int64(exp), 0)
}
