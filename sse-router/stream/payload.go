package stream

import (
	"encoding/json"
	"errors"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// Event names. Every payload is a JSON object whose "type" member repeats the name, so
// that the multiplexed stream (whose event names are subscription names) loses nothing.
const (
	EventSnapshot    = "snapshot" // the full state: replace what you have
	EventRelist      = "relist"   // the router had to list again: replace what you have
	EventAdded       = "added"
	EventModified    = "modified"
	EventDeleted     = "deleted"
	EventLog         = "log"
	EventMetrics     = "metrics"
	EventApp         = "app"
	EventApplication = "application" // an app's Argo CD Application as it is now
	EventError       = "error"
	EventEnd         = "end"
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

// ErrorPayload is the data of an `error` event.
type ErrorPayload struct {
	Type string `json:"type"`
	// Status is the HTTP status the upstream answered, when it did.
	Status int `json:"status,omitempty"`
	// Reason is a machine-readable reason (a Kubernetes StatusReason, "slow-client", …).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
	// Retrying says the router keeps trying: the stream goes on.
	Retrying bool `json:"retrying"`
}

// EndPayload is the data of an `end` event.
type EndPayload struct {
	Type   string `json:"type"`
	Reason string `json:"reason,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the router's own payload types are encoded; they always encode. Still,
		// a stream must not die of it: send the failure instead.
		b, _ = json.Marshal(ErrorPayload{Type: EventError, Message: "encoding failed: " + err.Error(), Retrying: true})
	}
	return b
}

// errorEvent describes err for subscribers.
func errorEvent(id string, err error, retrying bool) hub.Event {
	p := ErrorPayload{Type: EventError, Message: err.Error(), Retrying: retrying}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		p.Status, p.Reason = int(st.Code), string(st.Reason)
	}
	return hub.NewEvent(EventError, id, mustJSON(p))
}

func endEvent(reason string) hub.Event {
	return hub.NewEvent(EventEnd, EndID, mustJSON(EndPayload{Type: EventEnd, Reason: reason}))
}

// notFoundEvent is the error sent when what a stream follows does not exist.
func notFoundEvent(id, msg string) hub.Event {
	return hub.NewEvent(EventError, id, mustJSON(ErrorPayload{
		Type: EventError, Status: http.StatusNotFound, Reason: "NotFound", Message: msg,
	}))
}
