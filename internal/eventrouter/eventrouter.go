// Package eventrouter dispatches incoming CloudEvents to handlers by event type, and
// answers what it cannot handle with a 4xx and the reason, so a broker does not retry it.
package eventrouter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Handler handles one event. It may return a reply event (nil for none). An error
// wrapped with Invalid is answered 400 (not retried); any other error 500 (retried).
type Handler func(ctx context.Context, e event.Event) (*event.Event, error)

// Router maps CloudEvent types to handlers.
type Router struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

// New returns an empty Router.
func New() *Router { return &Router{handlers: map[string]Handler{}} }

// Handle registers h for eventType. Registering a type twice is a programming error.
func (r *Router) Handle(eventType string, h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.handlers[eventType]; dup {
		panic(fmt.Sprintf("eventrouter: handler for %q registered twice", eventType))
	}
	r.handlers[eventType] = h
}

// Types lists the registered event types, sorted.
func (r *Router) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	types := make([]string, 0, len(r.handlers))
	for t := range r.handlers {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }
func (e invalidError) Unwrap() error { return e.err }

// Invalid marks err as a problem with the event itself: it is answered 400.
func Invalid(err error) error { return invalidError{err} }

// Invalidf is Invalid(fmt.Errorf(format, args...)).
func Invalidf(format string, args ...any) error { return Invalid(fmt.Errorf(format, args...)) }

// IsInvalid reports whether err was marked with Invalid.
func IsInvalid(err error) bool {
	var ie invalidError
	return errors.As(err, &ie)
}

// dispatch runs e's handler. It answers the HTTP status of the outcome and, for a
// failure, the reason.
func (r *Router) dispatch(ctx context.Context, e event.Event) (reply *event.Event, status int, reason string) {
	if err := e.Validate(); err != nil {
		return nil, http.StatusBadRequest, "invalid CloudEvent: " + err.Error()
	}
	r.mu.RLock()
	h, ok := r.handlers[e.Type()]
	r.mu.RUnlock()
	if !ok {
		return nil, http.StatusBadRequest, fmt.Sprintf("unknown event type %q", e.Type())
	}
	reply, err := h(ctx, e)
	switch {
	case err == nil:
		return reply, http.StatusAccepted, ""
	case IsInvalid(err):
		return nil, http.StatusBadRequest, fmt.Sprintf("%s: %s", e.Type(), err)
	default:
		slog.ErrorContext(ctx, "event handler failed", "type", e.Type(), "id", e.ID(), "source", e.Source(), "err", err)
		return nil, http.StatusInternalServerError, fmt.Sprintf("%s: %s", e.Type(), err)
	}
}

// MaxEventBytes bounds a CloudEvent's body.
const MaxEventBytes = 1 << 20

// ServeHTTP serves one CloudEvent, in binary or structured mode, and answers 202 with
// the handler's reply event, if any. What cannot be handled is answered with a
// problem: 4xx with the reason when the event itself is wrong (a broker does not retry
// it), 5xx when handling failed (it is retried).
//
// The SDK's HTTP binding reads and writes the messages, but the event is handled here,
// in the request's goroutine: the SDK's receive handler (NewHTTPReceiveHandler) pairs
// requests with handlers through one shared channel and leaves a request blocked for
// good when another request's client goes away at the wrong moment
// (cloudevents/sdk-go#1224, #1332).
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		problem.Write(w, problem.Newf(http.StatusMethodNotAllowed, "CloudEvents are POSTed"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxEventBytes+1))
	if err != nil {
		problem.Write(w, problem.BadRequest("cannot read the event: "+err.Error()))
		return
	}
	if len(body) > MaxEventBytes {
		problem.Write(w, problem.Newf(http.StatusRequestEntityTooLarge, "the event is larger than %d bytes", MaxEventBytes))
		return
	}
	e, reason := decode(req.Context(), req.Header, body)
	if reason != "" {
		problem.Write(w, problem.BadRequest(reason))
		return
	}
	reply, status, reason := r.dispatch(req.Context(), *e)
	if status >= 400 {
		problem.Write(w, problem.Newf(status, "%s", reason))
		return
	}
	if reply == nil {
		w.WriteHeader(status)
		return
	}
	if err := cehttp.WriteResponseWriter(req.Context(), binding.ToMessage(reply), status, w); err != nil {
		slog.ErrorContext(req.Context(), "write reply event", "type", reply.Type(), "err", err)
	}
}

// decode reads one CloudEvent from an HTTP request's header and body; reason says why
// it is not one.
func decode(ctx context.Context, header http.Header, body []byte) (e *event.Event, reason string) {
	m := cehttp.NewMessage(header, io.NopCloser(bytes.NewReader(body)))
	defer m.Finish(nil)
	switch m.ReadEncoding() {
	case binding.EncodingUnknown:
		// The SDK reads binary mode only for the versions it knows; one it does not know
		// is not a missing header.
		if v := header.Get("Ce-Specversion"); v != "" && header.Get("Ce-Id") != "" && header.Get("Ce-Source") != "" && header.Get("Ce-Type") != "" {
			return nil, fmt.Sprintf("unsupported CloudEvents spec version %q: 1.0 and 0.3 are supported", v)
		}
		return nil, "not a CloudEvent: binary mode needs the ce-specversion, ce-id, ce-source and ce-type headers; structured mode needs Content-Type: application/cloudevents+json"
	case binding.EncodingBatch:
		return nil, "not a single CloudEvent: batches are not accepted"
	}
	e, err := binding.ToEvent(ctx, m)
	if err != nil {
		return nil, "malformed CloudEvent: " + err.Error()
	}
	return e, ""
}
