// Package problem writes HTTP errors as RFC 9457 problem details (application/problem+json),
// so that every service of the project answers errors in one shape a client can rely on.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem details object. It is also an error, so that code deep
// in a request can return the exact answer the client should get.
type Problem struct {
	// Type is a URI reference naming the kind of problem; empty means "about:blank",
	// where Title is the HTTP status text.
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Detail explains this occurrence, for a human.
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists what is wrong with each field of the request (an extension member).
	Errors []FieldError `json:"errors,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header in seconds.
	RetryAfter int `json:"-"`
}

// FieldError names one invalid part of a request: a path parameter, a query parameter or
// a member of the body (dotted, with [i] for list elements), and what is wrong with it.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (p Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	for _, fe := range p.Errors {
		fmt.Fprintf(&b, "; %s: %s", fe.Field, fe.Detail)
	}
	return b.String()
}

// New is a problem of the given status with the status text as its title.
func New(status int, detail string) Problem {
	return Problem{Title: http.StatusText(status), Status: status, Detail: detail}
}

// Newf is New with a formatted detail.
func Newf(status int, format string, args ...any) Problem {
	return New(status, fmt.Sprintf(format, args...))
}

// BadRequest is a 400 listing what is wrong with each field.
func BadRequest(detail string, errs ...FieldError) Problem {
	p := New(http.StatusBadRequest, detail)
	p.Errors = errs
	return p
}

// Unauthorized is a 401; Write adds the WWW-Authenticate challenge for a bearer token.
func Unauthorized(detail string) Problem { return New(http.StatusUnauthorized, detail) }

// Forbidden is a 403.
func Forbidden(detail string) Problem { return New(http.StatusForbidden, detail) }

// NotFound is a 404.
func NotFound(detail string) Problem { return New(http.StatusNotFound, detail) }

// Conflict is a 409.
func Conflict(detail string) Problem { return New(http.StatusConflict, detail) }

// Write sends p with its status. Problems without a title or a valid status are
// completed, so that a half-filled Problem never turns into a malformed answer.
func Write(w http.ResponseWriter, p Problem) {
	if p.Status < 400 || p.Status > 599 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer`)
	}
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	// Encoding a Problem cannot fail: it holds only strings and ints.
	_ = json.NewEncoder(w).Encode(p)
}

// As reports whether err is (or wraps) a Problem and returns it.
func As(err error) (Problem, bool) {
	var p Problem
	if errors.As(err, &p) {
		return p, true
	}
	var pp *Problem
	if errors.As(err, &pp) && pp != nil {
		return *pp, true
	}
	return Problem{}, false
}
