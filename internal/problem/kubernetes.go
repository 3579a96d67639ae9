package problem

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FromError is the problem a client should see for err: a Problem as it is, a Kubernetes
// API error by its status (see FromKubernetes), a timeout as 504, an unreachable upstream
// as 502, and anything else as a 500 whose detail does not leak internals (log err).
func FromError(err error) Problem {
	if err == nil {
		return New(http.StatusInternalServerError, "")
	}
	if p, ok := As(err); ok {
		return p
	}
	if p, ok := FromKubernetes(err); ok {
		return p
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return New(http.StatusGatewayTimeout, "an upstream service did not answer in time")
	case errors.Is(err, context.Canceled):
		return New(http.StatusServiceUnavailable, "the request was cancelled")
	}
	var ne net.Error
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return New(http.StatusGatewayTimeout, "an upstream service did not answer in time")
		}
		return New(http.StatusBadGateway, "an upstream service is unreachable")
	}
	return New(http.StatusInternalServerError, "internal error")
}

// FromKubernetes maps an error returned by the Kubernetes API server to a problem: the
// client's own mistakes and refusals keep their 4xx (an invalid object, 422, becomes a 400
// with one field error per cause), while the server's failures become 502/503/504, since
// for our clients the API server is an upstream. ok is false when err is not an API error.
func FromKubernetes(err error) (p Problem, ok bool) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return Problem{}, false
	}
	st := se.Status()
	msg := st.Message
	switch code := int(st.Code); {
	case st.Reason == metav1.StatusReasonInvalid || code == http.StatusUnprocessableEntity:
		p = New(http.StatusBadRequest, msg)
		if st.Details != nil {
			for _, c := range st.Details.Causes {
				field := c.Field
				if field == "" {
					field = "body"
				}
				p.Errors = append(p.Errors, FieldError{Field: field, Detail: c.Message})
			}
		}
	case code == http.StatusUnauthorized:
		p = New(code, "the Kubernetes API server did not accept the bearer token")
	case st.Reason == metav1.StatusReasonServerTimeout:
		p = New(http.StatusServiceUnavailable, msg)
		p.RetryAfter = retryAfter(st)
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		p = New(code, msg)
		p.RetryAfter = retryAfter(st)
	case code == http.StatusGatewayTimeout || st.Reason == metav1.StatusReasonTimeout:
		p = New(http.StatusGatewayTimeout, msg)
	case code >= 400 && code < 500:
		p = New(code, msg)
	default:
		p = New(http.StatusBadGateway, fmt.Sprintf("Kubernetes API server error: %s", msg))
	}
	return p, true
}

func retryAfter(st metav1.Status) int {
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		return int(st.Details.RetryAfterSeconds)
	}
	return 1
}
