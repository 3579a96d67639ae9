package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

// Reserved event names a subscription cannot take: the connection's own events.
var reservedNames = []string{EventSession, "error", "reconnect", "message"}

// EventSession is the first event of a multiplexed stream.
const EventSession = "session"

// MaxPathLen bounds a subscription's stream path.
const MaxPathLen = 4096

// Request is the body of POST …/subscriptions, and one subscription in a `session`
// event.
type Request struct {
	// Name is the subscription's event name: a letter, then letters, digits, '_', '-'
	// or '.', at most 64 characters.
	Name string `json:"name"`
	// Path is the stream, as under /api/v1/stream/ (with its query), e.g.
	// "clusters/local/namespaces/shop/pods?app=web".
	Path string `json:"path"`
}

// ValidName checks a subscription's name.
func ValidName(n string) error {
	if n == "" || len(n) > 64 {
		return errors.New("must be 1 to 64 characters")
	}
	for i, r := range n {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.'):
		default:
			return errors.New("must start with a letter and hold only letters, digits, '_', '-' and '.'")
		}
	}
	if slices.Contains(reservedNames, n) {
		return fmt.Errorf("%q is reserved", n)
	}
	return nil
}

// ParseRequest validates a subscription's name and stream path.
func ParseRequest(req Request, appLabel string) (api.Spec, error) {
	if err := ValidName(req.Name); err != nil {
		return api.Spec{}, &api.SpecError{Field: "name", Detail: err.Error()}
	}
	if len(req.Path) > MaxPathLen {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "too long"}
	}
	u, err := url.Parse(req.Path)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Fragment != "" {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "must be a stream path such as namespaces/shop/pods?app=web"}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return api.Spec{}, &api.SpecError{Field: "path", Detail: "invalid query: " + err.Error()}
	}
	spec, err := api.ParseSpec(u.EscapedPath(), q, appLabel)
	if err != nil {
		var se *api.SpecError
		if errors.As(err, &se) {
			return api.Spec{}, &api.SpecError{Field: "path: " + se.Field, Detail: se.Detail}
		}
		return api.Spec{}, err
	}
	if spec.LastEventID != "" {
		return api.Spec{}, &api.SpecError{Field: "path: lastEventId", Detail: "not allowed in a subscription"}
	}
	return spec, nil
}

// ParseBody parses the JSON body of POST …/subscriptions.
func ParseBody(body []byte, appLabel string) (Request, api.Spec, error) {
	var req Request
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, api.Spec{}, &api.SpecError{Field: "body", Detail: "must be a JSON object {\"name\": ..., \"path\": ...}: " + err.Error()}
	}
	if dec.More() {
		return req, api.Spec{}, &api.SpecError{Field: "body", Detail: "must hold one JSON object"}
	}
	spec, err := ParseRequest(req, appLabel)
	return req, spec, err
}

// ParseQuery parses one `subscribe=<name>:<path>` query value.
func ParseQuery(v, appLabel string) (Request, api.Spec, error) {
	name, path, ok := strings.Cut(v, ":")
	if !ok {
		return Request{}, api.Spec{}, &api.SpecError{Field: "subscribe", Detail: "must be <name>:<stream path>"}
	}
	req := Request{Name: name, Path: path}
	spec, err := ParseRequest(req, appLabel)
	if err != nil {
		var se *api.SpecError
		if errors.As(err, &se) {
			return req, spec, &api.SpecError{Field: "subscribe " + name + ": " + se.Field, Detail: se.Detail}
		}
	}
	return req, spec, err
}

// Want is a subscription a connection asks for: parsed and valid, not yet authorized.
type Want struct {
	Req  Request
	Spec api.Spec
	// Carried: the subscription is not in the stream's URL (it was added by POST); ids
	// carry its name and path so that any router can resume it.
	Carried bool
	// Resume is where it resumes (from a Last-Event-ID).
	Resume api.Resume
}

// ParseWants parses the `subscribe` values of a stream's URL: valid, distinct names, at
// most max of them.
func ParseWants(values []string, appLabel string, max int) ([]Want, error) {
	var out []Want
	for _, v := range values {
		req, spec, err := ParseQuery(v, appLabel)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if o.Req.Name == req.Name {
				return nil, &api.SpecError{Field: "subscribe", Detail: fmt.Sprintf("name %q given twice", req.Name)}
			}
		}
		out = append(out, Want{Req: req, Spec: spec})
	}
	if len(out) > max {
		return nil, &TooManyError{Max: max}
	}
	return out, nil
}

// TooManyError: a stream asks for more subscriptions than allowed.
type TooManyError struct{ Max int }

func (e *TooManyError) Error() string {
	return fmt.Sprintf("at most %d subscriptions per stream", e.Max)
}
