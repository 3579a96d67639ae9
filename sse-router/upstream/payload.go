package upstream

import (
	"encoding/json"
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the router's own payload types are encoded; they always encode. Still,
		// a stream must not die of it: send the failure instead.
		b, _ = json.Marshal(api.ErrorPayload{Type: api.EventError, Code: api.CodeUpstreamError, Message: "encoding failed", Retrying: true})
	}
	return b
}

// errorEvent describes err for subscribers (see ErrorPayloadOf); callers log err.
func errorEvent(id string, err error, retrying bool) hub.Event {
	return hub.NewEvent(api.EventError, id, mustJSON(api.ErrorPayloadOf(err, retrying)))
}

func endEvent(reason string) hub.Event {
	return hub.NewEvent(api.EventEnd, api.EndID, mustJSON(api.EndPayload{Type: api.EventEnd, Reason: reason}))
}

// notFoundEvent is the error sent when what a stream follows does not exist.
func notFoundEvent(id, msg string) hub.Event {
	return hub.NewEvent(api.EventError, id, mustJSON(api.ErrorPayload{
		Type: api.EventError, Status: http.StatusNotFound, Code: api.CodeNotFound, Reason: "NotFound", Message: msg,
	}))
}
