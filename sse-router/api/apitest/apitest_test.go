package apitest

import (
	"fmt"
	"testing"
)

// recorder counts the errors a check reports instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}

// CheckFields finds every difference between a type and its schema.
func TestCheckFields(t *testing.T) {
	doc := Doc(t)
	type end struct {
		Type   string `json:"type"`
		Reason string `json:"reason,omitempty"`
	}
	type extra struct {
		Type   string `json:"type"`
		Reason string `json:"reason,omitempty"`
		Why    string `json:"why"`
	}
	type missing struct {
		Type string `json:"type"`
	}
	type optional struct {
		Type   string `json:"type,omitempty"`
		Reason string `json:"reason,omitempty"`
	}
	type nested struct {
		Name string `json:"name"`
		Sync struct {
			Status string `json:"status"`
			Extra  string `json:"extra"`
		} `json:"sync"`
	}
	tests := []struct {
		schema string
		v      any
		errors int
	}{
		{"End", end{}, 0},
		{"End", extra{}, 1},
		{"End", missing{}, 1},
		{"End", optional{}, 1},
		{"ApplicationView", nested{}, 1 + 5 + 2}, // sync.extra; 5 members absent; sync.revision(s) absent
	}
	for _, tt := range tests {
		r := &recorder{TB: t}
		CheckFields(r, doc, tt.schema, tt.v)
		if len(r.errors) != tt.errors {
			t.Errorf("%s against %T: %d errors, want %d: %q", tt.schema, tt.v, len(r.errors), tt.errors, r.errors)
		}
	}
}
