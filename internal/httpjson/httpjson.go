// Package httpjson reads JSON request bodies and writes JSON answers the way every
// operation of the task function does: strict on the way in (one object, no unknown
// fields, bounded), never cached on the way out.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Write answers v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// Decode reads exactly one JSON value of at most max bytes into v, answering what is wrong
// as a problem (400, or 413 past max), naming the field
// of any type error and rejecting unknown fields (a typo must not be silently ignored).
func Decode(r io.Reader, max int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return problem.BadRequest(fmt.Sprintf("cannot read the body: %v", err))
	}
	if int64(len(body)) > max {
		return problem.Newf(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", max)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return problem.BadRequest("the body is empty: a JSON object is required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "body"
			}
			return problem.BadRequest("the body does not match the request schema",
				problem.FieldError{Field: field, Detail: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)})
		case errors.As(err, &se):
			return problem.BadRequest(fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", se, se.Offset))
		// encoding/json reports an unknown field only as this message (no typed error
		// before encoding/json/v2, still an experiment).
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return problem.BadRequest("the body has an unknown field", problem.FieldError{Field: name, Detail: "unknown field"})
		default:
			return problem.BadRequest(fmt.Sprintf("the body is not valid JSON: %v", err))
		}
	}
	if dec.More() {
		return problem.BadRequest("the body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return problem.BadRequest("the body has data after the JSON object")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int32", "int64", "uint", "float64":
		return "number"
	case "bool":
		return "boolean"
	default:
		return goKind
	}
}
