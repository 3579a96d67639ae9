package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		p          Problem
		wantStatus int
		wantTitle  string
		wantHeader map[string]string
	}{
		{"bad request with fields", BadRequest("invalid", FieldError{"namespace", "must be a DNS label"}), 400, "Bad Request", nil},
		{"unauthorized challenges", Unauthorized("no token"), 401, "Unauthorized", map[string]string{"WWW-Authenticate": "Bearer"}},
		{"forbidden", Forbidden("no"), 403, "Forbidden", nil},
		{"not found", NotFound("gone"), 404, "Not Found", nil},
		{"conflict", Conflict("finished"), 409, "Conflict", nil},
		{"retry after", Problem{Status: 503, RetryAfter: 3}, 503, "Service Unavailable", map[string]string{"Retry-After": "3"}},
		{"status out of range becomes 500", Problem{Status: 200, Title: "odd"}, 500, "odd", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, tt.p)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if ct := rec.Header().Get("Content-Type"); ct != ContentType {
				t.Fatalf("content type %q", ct)
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			var got Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.wantStatus || got.Title != tt.wantTitle {
				t.Fatalf("body %+v", got)
			}
			if len(got.Errors) != len(tt.p.Errors) {
				t.Fatalf("errors %v, want %v", got.Errors, tt.p.Errors)
			}
		})
	}
}

func TestFromError(t *testing.T) {
	gr := schema.GroupResource{Group: "argoproj.io", Resource: "workflows"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: "argoproj.io", Kind: "Workflow"}, "x", field.ErrorList{
		field.Invalid(field.NewPath("metadata", "name"), "X", "must be lower case"),
	})
	tooMany := apierrors.NewTooManyRequests("slow down", 7)
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantFields int
		wantRetry  int
	}{
		{"problem kept", Conflict("done"), 409, 0, 0},
		{"wrapped problem kept", fmt.Errorf("stop: %w", NotFound("x")), 404, 0, 0},
		{"pointer problem kept", &Problem{Status: 403, Title: "Forbidden"}, 403, 0, 0},
		{"kube not found", apierrors.NewNotFound(gr, "x"), 404, 0, 0},
		{"kube forbidden", apierrors.NewForbidden(gr, "x", errors.New("rbac")), 403, 0, 0},
		{"kube unauthorized", apierrors.NewUnauthorized("bad token"), 401, 0, 0},
		{"kube conflict", apierrors.NewConflict(gr, "x", errors.New("changed")), 409, 0, 0},
		{"kube already exists", apierrors.NewAlreadyExists(gr, "x"), 409, 0, 0},
		{"kube invalid is 400 with causes", invalid, 400, 1, 0},
		{"kube bad request", apierrors.NewBadRequest("bad selector"), 400, 0, 0},
		{"kube expired continue", apierrors.NewResourceExpired("too old"), 410, 0, 0},
		{"kube too many requests", tooMany, 429, 0, 7},
		{"kube internal is bad gateway", apierrors.NewInternalError(errors.New("etcd")), 502, 0, 0},
		{"kube server timeout", apierrors.NewServerTimeout(gr, "list", 2), 503, 0, 2},
		{"kube service unavailable", apierrors.NewServiceUnavailable("later"), 503, 0, 1},
		{"kube timeout", apierrors.NewTimeoutError("slow", 0), 504, 0, 0},
		{"wrapped kube error", fmt.Errorf("get: %w", apierrors.NewNotFound(gr, "x")), 404, 0, 0},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), 504, 0, 0},
		{"network", &net.OpError{Op: "dial", Err: errors.New("refused")}, 502, 0, 0},
		{"anything else", errors.New("boom"), 500, 0, 0},
		{"nil", nil, 500, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := FromError(tt.err)
			if p.Status != tt.wantStatus {
				t.Fatalf("status %d, want %d (%v)", p.Status, tt.wantStatus, p)
			}
			if len(p.Errors) != tt.wantFields {
				t.Fatalf("field errors %v", p.Errors)
			}
			if p.RetryAfter != tt.wantRetry {
				t.Fatalf("retry after %d, want %d", p.RetryAfter, tt.wantRetry)
			}
			if p.Title != http.StatusText(p.Status) {
				t.Fatalf("title %q", p.Title)
			}
		})
	}
	if p := FromError(errors.New("password=secret")); p.Detail != "internal error" {
		t.Fatalf("internal detail leaked: %q", p.Detail)
	}
}

func TestProblemIsError(t *testing.T) {
	err := error(BadRequest("invalid request", FieldError{"limit", "must be at most 500"}))
	want := "400 Bad Request: invalid request; limit: must be at most 500"
	if err.Error() != want {
		t.Fatalf("%q, want %q", err.Error(), want)
	}
	if _, ok := As(errors.New("plain")); ok {
		t.Fatal("plain error taken for a problem")
	}
}
