package upstream

import (
	"fmt"
	"net/http"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

type objectPayload struct {
	Type   string `json:"type"`
	Object any    `json:"object"`
}

type listPayload struct {
	Type            string `json:"type"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Items           []any  `json:"items"`
}

func publicErrorf(code, format string, args ...any) error {
	return &api.PublicError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// errorEvent describes err for subscribers (see ErrorPayloadOf); callers log err.
func errorEvent(id string, err error, retrying bool) hub.Event {
	return hub.NewEvent(api.EventError, id, api.Marshal(api.ErrorPayloadOf(err, retrying)))
}

func endEvent(reason string) hub.Event {
	return hub.NewEvent(api.EventEnd, api.EndID, api.Marshal(api.EndPayload{Type: api.EventEnd, Reason: reason}))
}

// notFoundEvent is the error sent when what a stream follows does not exist.
func notFoundEvent(id, msg string) hub.Event {
	return hub.NewEvent(api.EventError, id, api.Marshal(api.ErrorPayload{
		Type: api.EventError, Status: http.StatusNotFound, Code: api.CodeNotFound, Reason: "NotFound", Message: msg,
	}))
}
