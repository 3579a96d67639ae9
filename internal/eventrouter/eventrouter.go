// Package eventrouter dispatches incoming CloudEvents to handlers by event type, and
// answers what it cannot handle with a 4xx and the reason, so a broker does not retry it.
package eventrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
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

// Receive dispatches e; its signature fits cloudevents.NewHTTPReceiveHandler.
func (r *Router) Receive(ctx context.Context, e event.Event) (*event.Event, protocol.Result) {
	if err := e.Validate(); err != nil {
		return nil, cloudevents.NewHTTPResult(http.StatusBadRequest, "invalid event: %s", err)
	}
	r.mu.RLock()
	h, ok := r.handlers[e.Type()]
	r.mu.RUnlock()
	if !ok {
		return nil, cloudevents.NewHTTPResult(http.StatusBadRequest, "unknown event type %q", e.Type())
	}
	reply, err := h(ctx, e)
	switch {
	case err == nil:
		return reply, cloudevents.NewHTTPResult(http.StatusAccepted, "")
	case IsInvalid(err):
		return nil, cloudevents.NewHTTPResult(http.StatusBadRequest, "%s: %s", e.Type(), err)
	default:
		slog.ErrorContext(ctx, "event handler failed", "type", e.Type(), "id", e.ID(), "source", e.Source(), "err", err)
		return nil, cloudevents.NewHTTPResult(http.StatusInternalServerError, "%s: %s", e.Type(), err)
	}
}

// HTTPHandler serves CloudEvents in binary and structured mode. A body that is not a
// CloudEvent at all is answered 400 by the SDK.
func (r *Router) HTTPHandler(ctx context.Context) (http.Handler, error) {
	p, err := cloudevents.NewHTTP()
	if err != nil {
		return nil, fmt.Errorf("cloudevents protocol: %w", err)
	}
	h, err := cloudevents.NewHTTPReceiveHandler(ctx, p, r.Receive)
	if err != nil {
		return nil, fmt.Errorf("cloudevents receive handler: %w", err)
	}
	return h, nil
}
