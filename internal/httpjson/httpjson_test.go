package httpjson

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

type request struct {
	Name  string   `json:"name"`
	Count int      `json:"count"`
	Tags  []string `json:"tags"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		body   string
		status int
		field  string
		detail string
	}{
		{`{"name":"a","count":2,"tags":["x"]}`, 0, "", ""},
		{``, 400, "", "empty"},
		{`   `, 400, "", "empty"},
		{`{"name":1}`, 400, "name", "must be a JSON string"},
		{`{"count":"2"}`, 400, "count", "must be a JSON number"},
		{`{"tags":{}}`, 400, "tags", "must be a JSON array"},
		{`{"nmae":"a"}`, 400, "nmae", "unknown field"},
		{`{"name":"a"`, 400, "", "not valid JSON"},
		{`{"name":"a"} {}`, 400, "", "data after"},
		{`[]`, 400, "body", "must be a JSON object"},
		{`{"name":"` + strings.Repeat("a", 100) + `"}`, 413, "", "larger than"},
	}
	for _, tt := range tests {
		var v request
		err := Decode(strings.NewReader(tt.body), 64, &v)
		if tt.status == 0 {
			if err != nil || v.Name != "a" || v.Count != 2 {
				t.Errorf("%s: %v %+v", tt.body, err, v)
			}
			continue
		}
		var p problem.Problem
		if !errors.As(err, &p) || p.Status != tt.status {
			t.Errorf("%.40s: %v, want a %d problem", tt.body, err, tt.status)
			continue
		}
		text := p.Detail + p.Title
		for _, fe := range p.Errors {
			text += " " + fe.Field + ": " + fe.Detail
		}
		if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
			t.Errorf("%s: field errors %+v, want one on %s", tt.body, p.Errors, tt.field)
		}
		if !strings.Contains(text, tt.detail) {
			t.Errorf("%s: %q lacks %q", tt.body, text, tt.detail)
		}
	}
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	if err := Write(w, http.StatusCreated, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if w.Code != 201 || w.Body.String() != "{\"a\":1}\n" || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %q %v", w.Code, w.Body, w.Header())
	}
	if err := Write(httptest.NewRecorder(), 200, func() {}); err == nil {
		t.Fatal("a value JSON cannot hold was written")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(`{"name":"a","count":1}`)
	f.Add(`{"tags":[1]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var v request
		err := Decode(strings.NewReader(body), 1<<10, &v)
		if err == nil {
			return
		}
		var p problem.Problem
		if !errors.As(err, &p) || p.Status/100 != 4 {
			t.Fatalf("%q: %v is not a 4xx problem", body, err)
		}
	})
}
