// Package eventauth lets only known senders deliver CloudEvents. A sender proves who it
// is as Knative Eventing's OIDC delivery does: a ServiceAccount token whose audience is
// the receiver's, in "Authorization: Bearer". The API server checks the token
// (TokenReview with the receiver's audience); the receiver checks the identity against
// its list of allowed senders. Events change state that users see (summaries, CD
// steps), so an event from anyone else is refused before it is even read.
package eventauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/envflag"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Configuration keys read from the function's cfg.
const (
	// EnvAudience is the audience a sender's token must have: the function's own, as
	// Knative gives it to the function's subscribers' deliveries.
	EnvAudience = "DWP_EVENTS_AUDIENCE"
	// EnvSenders lists the identities allowed to send events, comma-separated, as the
	// API server names them (system:serviceaccount:<namespace>:<name>); a trailing * matches
	// any rest, as in an EventPolicy's sub (Knative names each Trigger's identity after it).
	EnvSenders = "DWP_EVENT_SENDERS"
)

// Authenticator says who a token belongs to; *authz.Reviewer is one (it caches answers).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (authz.User, error)
}

// Config is what a Guard needs from the function's configuration.
type Config struct {
	Audience string
	Senders  []string
}

// ParseConfig reads EnvAudience and EnvSenders. No senders is valid (every event is
// refused); senders without an audience are not, since a token for the API server
// itself would then be accepted as a delivery.
func ParseConfig(cfg map[string]string) (Config, error) {
	c, err := envflag.FromMap(settings, cfg)
	if err != nil {
		return Config{}, err
	}
	if len(c.Senders) > 0 && c.Audience == "" {
		return Config{}, fmt.Errorf("%s is set but %s is not: give the audience senders' tokens are made for", EnvSenders, EnvAudience)
	}
	return c, nil
}

var settings = []envflag.Setting[Config]{
	envflag.Func(EnvAudience, "events-audience", "", "the audience of senders' tokens", func(c *Config, v string) error {
		c.Audience = strings.TrimSpace(v)
		return nil
	}),
	envflag.Func(EnvSenders, "event-senders", "", "identities allowed to send CloudEvents, comma-separated", func(c *Config, v string) error {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" && !slices.Contains(c.Senders, s) {
				c.Senders = append(c.Senders, s)
			}
		}
		return nil
	}),
}

// Guard admits requests from allowed senders only.
type Guard struct {
	auth     Authenticator
	senders  []string
	audience string
	timeout  time.Duration
}

// NewGuard admits the senders of c whose tokens auth accepts; auth must check the
// audience (authz.Options.Audiences). With no senders, nothing is admitted and auth may
// be nil.
func NewGuard(auth Authenticator, c Config) *Guard {
	if len(c.Senders) == 0 {
		slog.Warn("no event senders configured: every CloudEvent will be refused", "variable", EnvSenders)
	} else {
		slog.Info("CloudEvents accepted from", "senders", c.Senders, "audience", c.Audience)
	}
	return &Guard{auth: auth, senders: c.Senders, audience: c.Audience, timeout: 10 * time.Second}
}

// Check returns nil when r comes from an allowed sender, else a problem: 401 for a
// missing, malformed, rejected or wrongly audienced token, 403 for a sender not allowed,
// 503 when the API server cannot be asked (a broker retries it).
func (g *Guard) Check(r *http.Request) error {
	if r.Header.Get("Authorization") == "" {
		return problem.Unauthorized("a CloudEvent needs its sender's token: \"Authorization: Bearer <token>\", made for audience " + strconv.Quote(g.audience))
	}
	token, err := authz.BearerToken(r)
	if err != nil {
		return err
	}
	if len(g.senders) == 0 || g.auth == nil {
		return problem.Forbidden("no sender is allowed to send events: " + EnvSenders + " is empty")
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.timeout)
	defer cancel()
	u, err := g.auth.Authenticate(ctx, token)
	switch {
	case errors.Is(err, authz.ErrUnauthenticated):
		return problem.Unauthorized("the bearer token was not accepted for this receiver's audience")
	case err != nil:
		// The cause (an API server's address) is logged, not told to the sender.
		slog.ErrorContext(ctx, "event sender check failed", "err", err)
		p := problem.New(http.StatusServiceUnavailable, "the sender's token cannot be checked now")
		p.RetryAfter = 1
		return p
	case !g.allowed(u.Name):
		return problem.Forbidden(fmt.Sprintf("%q may not send events", u.Name))
	}
	return nil
}

func (g *Guard) allowed(name string) bool {
	for _, s := range g.senders {
		if prefix, ok := strings.CutSuffix(s, "*"); ok && strings.HasPrefix(name, prefix) || s == name {
			return true
		}
	}
	return false
}

// Wrap serves next only for allowed senders and answers the others with Check's problem.
func (g *Guard) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Check(r); err != nil {
			p := problem.FromError(err)
			if p.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", "Bearer")
			}
			// An authenticated sender refused is worth a warning; anonymous refusals are
			// anyone's to make, and would flood the log.
			level := slog.LevelDebug
			if p.Status == http.StatusForbidden {
				level = slog.LevelWarn
			}
			slog.Log(r.Context(), level, "event refused", "status", p.Status, "reason", p.Detail, "remote", r.RemoteAddr)
			problem.Write(w, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}
