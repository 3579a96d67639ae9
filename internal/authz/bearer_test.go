package authz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

func TestServe(t *testing.T) {
	tests := []struct {
		name       string
		header     string
		err        error
		wantCalled bool
		wantStatus int
	}{
		{"token passed on", "Bearer abc", nil, true, http.StatusNoContent},
		{"no token", "", nil, false, http.StatusUnauthorized},
		{"malformed token", "Basic dXNlcjpwYXNz", nil, false, http.StatusUnauthorized},
		{"problem kept", "Bearer abc", problem.NotFound("no such thing"), true, http.StatusNotFound},
		{"other error hidden", "Bearer abc", errors.New("secret detail"), true, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/api/v1/things", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			w := httptest.NewRecorder()
			called := false
			Serve(w, r, time.Minute, func(ctx context.Context, token string) error {
				called = true
				if token != "abc" {
					t.Errorf("token %q", token)
				}
				if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Minute {
					t.Errorf("deadline %v, %v", d, ok)
				}
				if tt.err == nil {
					w.WriteHeader(http.StatusNoContent)
				}
				return tt.err
			})
			if called != tt.wantCalled || w.Code != tt.wantStatus {
				t.Fatalf("called %v, status %d; want %v, %d", called, w.Code, tt.wantCalled, tt.wantStatus)
			}
			if w.Code < 400 {
				return
			}
			var p problem.Problem
			if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Instance != "/api/v1/things" || p.Status != tt.wantStatus || w.Header().Get("Content-Type") != problem.ContentType {
				t.Errorf("problem %+v, content type %q", p, w.Header().Get("Content-Type"))
			}
			if tt.wantStatus == http.StatusInternalServerError && p.Detail == "secret detail" {
				t.Error("an internal error leaked")
			}
		})
	}
}
