package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	EventHistory     = "history" // the usage of a metrics stream's pods over the last hour, before its first `metrics`
	EventApp         = "app"
	EventApplication = "application" // an app's Argo CD Application as it is now
	EventError       = "error"
	EventEnd         = "end"
)

// ErrorPayload is the data of an `error` event.
type ErrorPayload struct {
	Type string `json:"type"`
	// Status is the HTTP status the upstream answered, when it did (or the router's, for
	// a stream it ends itself: 401, 403).
	Status int `json:"status,omitempty"`
	// Code is stable and machine-readable (Code… constants): what a client acts on.
	Code string `json:"code"`
	// Reason is a machine-readable reason (a Kubernetes StatusReason, "slow-client", …).
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
	// Retrying says the router keeps trying: the stream goes on.
	Retrying bool `json:"retrying"`
}

// Codes of `error` events. Messages are for people and may change; codes do not. What
// went wrong upstream in detail (addresses, the API server's own words) is in the
// router's log, never in an event: browsers are outside the trust boundary.
const (
	CodeUpstreamUnavailable = "upstream-unavailable" // the cluster could not be reached, or failed (5xx, timeouts)
	CodeUpstreamRefused     = "upstream-refused"     // the cluster refused the router itself (401/403 upstream)
	CodeUpstreamError       = "upstream-error"       // any other answer the router cannot use
	CodeNotFound            = "not-found"            // what the stream follows does not exist
	CodeInvalid             = "invalid"              // the cluster refused the request as invalid (e.g. an unknown container)
	CodeGap                 = "gap"                  // some lines or changes are missing from what follows
	CodeSlowClient          = "slow-client"          // the client fell behind: reconnect to resume
	CodeReplaced            = "replaced"             // a newer connection took over the session
	CodeForbidden           = "forbidden"            // the user's right to this stream was revoked: do not reconnect
	CodeUnauthenticated     = "unauthenticated"      // the user's token expired or was revoked: sign in again
)

// PublicError is an error whose message the router wrote for clients: it is sent as it is.
type PublicError struct {
	Code    string
	Message string
}

func (e *PublicError) Error() string { return e.Message }

// ErrorPayloadOf describes err for clients: a stable code and a message that never holds
// the upstream's own text beyond what concerns the user's request (a pod or container
// name), and none of the router's addresses.
func ErrorPayloadOf(err error, retrying bool) ErrorPayload {
	p := ErrorPayload{Type: EventError, Retrying: retrying}
	var pe *PublicError
	var se apierrors.APIStatus
	switch {
	case errors.As(err, &pe):
		p.Code, p.Message = pe.Code, pe.Message
		return p
	case errors.As(err, &se):
		st := se.Status()
		p.Status, p.Reason = int(st.Code), string(st.Reason)
		switch code := int(st.Code); {
		case code == http.StatusNotFound || code == http.StatusGone:
			p.Code, p.Message = CodeNotFound, scrub(st.Message)
		case code == http.StatusBadRequest || code == http.StatusUnprocessableEntity:
			p.Code, p.Message = CodeInvalid, scrub(st.Message)
		case code == http.StatusUnauthorized || code == http.StatusForbidden:
			p.Code, p.Message = CodeUpstreamRefused, "the cluster refused the router access"
		case code == http.StatusTooManyRequests || code >= 500:
			p.Code, p.Message = CodeUpstreamUnavailable, "the cluster is unavailable"
		default:
			p.Code, p.Message = CodeUpstreamError, fmt.Sprintf("the cluster answered %d %s", code, http.StatusText(code))
		}
	default:
		p.Code, p.Message = CodeUpstreamUnavailable, "the cluster could not be reached"
	}
	if retrying {
		p.Message += "; retrying"
	}
	return p
}

// addressLike matches what could name a host: URLs, IP addresses (v4, or v6 in
// brackets) with or without a port, host:port.
var addressLike = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://\S+|\[[0-9a-fA-F:.]+\](:\d+)?|\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b|\b[a-zA-Z0-9.-]+:\d{2,5}\b`)

// scrub removes addresses from an upstream message that is otherwise about the user's
// request (a kubelet's error can be wrapped into a 400).
func scrub(msg string) string {
	return addressLike.ReplaceAllString(msg, "…")
}

// EndPayload is the data of an `end` event.
type EndPayload struct {
	Type   string `json:"type"`
	Reason string `json:"reason,omitempty"`
}

// Marshal encodes a payload. Only the router's own payload types are encoded, and they
// always encode; still, a stream must not die of it: a failure is sent as an error event.
func Marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(ErrorPayload{Type: EventError, Code: CodeUpstreamError, Message: "encoding failed", Retrying: true})
	}
	return b
}
