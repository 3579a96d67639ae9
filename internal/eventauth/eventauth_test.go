package eventauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/internal/authz"
)

// tokens maps a token to its user; an unknown token is not accepted, "down" fails.
type tokens map[string]string

func (t tokens) Authenticate(_ context.Context, token string) (authz.User, error) {
	if token == "down" {
		return authz.User{}, errors.New("connection refused")
	}
	name, ok := t[token]
	if !ok {
		return authz.User{}, authz.ErrUnauthenticated
	}
	return authz.User{Name: name}, nil
}

const watcher = "system:serviceaccount:dwp-system:dwp-watcher"

func TestGuard(t *testing.T) {
	auth := tokens{"w": watcher, "other": "system:serviceaccount:shop:web",
		"trigger":  "system:serviceaccount:dwp-system:dwp-function-pod-changed-oidc-eventing.knative.dev-trigger",
		"function": "system:serviceaccount:dwp-system:dwp-function"}
	allowing := NewGuard(auth, Config{Audience: "dwp-function", Senders: []string{watcher, "system:serviceaccount:dwp-system:dwp-function-*"}})
	nobody := NewGuard(nil, Config{})
	for _, tc := range []struct {
		name   string
		guard  *Guard
		header string
		want   int
		detail string
	}{
		{"allowed sender", allowing, "Bearer w", http.StatusAccepted, ""},
		{"allowed by a pattern", allowing, "Bearer trigger", http.StatusAccepted, ""},
		{"not the pattern's prefix", allowing, "Bearer function", http.StatusForbidden, "may not send"},
		{"no token", allowing, "", http.StatusUnauthorized, "Authorization: Bearer"},
		{"not a bearer token", allowing, "Basic dXNlcjpwdw==", http.StatusUnauthorized, "Bearer"},
		{"token not accepted (or for another audience)", allowing, "Bearer forged", http.StatusUnauthorized, "not accepted"},
		{"sender not allowed", allowing, "Bearer other", http.StatusForbidden, "system:serviceaccount:shop:web"},
		{"API server down", allowing, "Bearer down", http.StatusServiceUnavailable, "cannot be checked now"},
		{"no sender configured", nobody, "Bearer w", http.StatusForbidden, EnvSenders},
		{"no sender configured, no token", nobody, "", http.StatusUnauthorized, "Bearer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reached := false
			h := tc.guard.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				reached = true
				w.WriteHeader(http.StatusAccepted)
			}))
			req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader("{}"))
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if reached != (tc.want == http.StatusAccepted) {
				t.Fatalf("handler reached: %v", reached)
			}
			if tc.want >= 400 {
				if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("content type %q", ct)
				}
				if !strings.Contains(rec.Body.String(), tc.detail) {
					t.Errorf("body %s, want %q", rec.Body, tc.detail)
				}
				if strings.Contains(rec.Body.String(), "connection refused") {
					t.Errorf("the cause reached the sender: %s", rec.Body)
				}
			}
			if tc.want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("401 without WWW-Authenticate: %v", rec.Header())
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(map[string]string{EnvAudience: " dwp-function ", EnvSenders: watcher + ", ,a," + watcher})
	if err != nil || c.Audience != "dwp-function" || strings.Join(c.Senders, "|") != watcher+"|a" {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := ParseConfig(nil); err != nil || len(c.Senders) != 0 {
		t.Fatalf("empty: %+v %v", c, err)
	}
	if _, err := ParseConfig(map[string]string{EnvSenders: watcher}); err == nil || !strings.Contains(err.Error(), EnvAudience) {
		t.Fatalf("senders without an audience: %v", err)
	}
}
