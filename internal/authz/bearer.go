package authz

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// maxTokenLen bounds the bearer token accepted (service account JWTs are ~1 KiB).
const maxTokenLen = 16 << 10

// BearerToken is the token of a request's "Authorization: Bearer <token>" header. A missing,
// malformed or implausible one is a 401 problem saying what is wrong.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", problem.Unauthorized("a bearer token is required: send the portal user's token as \"Authorization: Bearer <token>\"")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", problem.Unauthorized("the Authorization header must be \"Bearer <token>\"")
	}
	if len(token) > maxTokenLen {
		return "", problem.Unauthorized("the bearer token is too long")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", problem.Unauthorized("the bearer token has characters a token cannot have")
		}
	}
	return token, nil
}

// Serve runs serve for the caller of r, named by its bearer token, within timeout, and
// answers a missing or malformed token, or the error serve returns, as a problem about
// r's path. Server errors (5xx) are logged, since their answer hides the cause.
func Serve(w http.ResponseWriter, r *http.Request, timeout time.Duration, serve func(ctx context.Context, token string) error) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	token, err := BearerToken(r)
	if err == nil {
		err = serve(ctx, token)
	}
	if err == nil {
		return
	}
	p := problem.FromError(err)
	if p.Status >= 500 {
		slog.ErrorContext(ctx, "request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	p.Instance = r.URL.Path
	problem.Write(w, p)
}
