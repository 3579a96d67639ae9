package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
)

func TestValidName(t *testing.T) {
	for _, ok := range []string{"pods", "p1", "log.web-1", "A_b"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1pods", "a b", "a:b", "session", "error", "reconnect", "message", strings.Repeat("a", 65), "é"} {
		if ValidName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseBody(t *testing.T) {
	tests := []struct {
		body      string
		wantKind  api.Kind
		wantField string
	}{
		{`{"name":"pods","path":"namespaces/shop/pods?app=web"}`, api.KindPods, ""},
		{`{"name":"log","path":"/api/v1/stream/clusters/c/namespaces/shop/pods/p/log?tailLines=5"}`, api.KindPodLog, ""},
		{`{"name":"pods","path":"namespaces/shop/pods","extra":1}`, "", "body"},
		{`{"name":"pods","path":"namespaces/shop/pods"} {}`, "", "body"},
		{`[1]`, "", "body"},
		{`{"name":"session","path":"namespaces/shop/pods"}`, "", "name"},
		{`{"name":"x","path":"https://elsewhere/namespaces/shop/pods"}`, "", "path"},
		{`{"name":"x","path":"namespaces/shop/pods?lastEventId=5"}`, "", "path: lastEventId"},
		{`{"name":"x","path":"namespaces/shop/pods?app="}`, "", "path: app"},
		{`{"name":"x","path":"namespaces/shop/nothing"}`, "", "path: path"},
	}
	for _, tt := range tests {
		_, spec, err := ParseBody([]byte(tt.body), "app")
		if tt.wantField == "" {
			if err != nil || spec.Kind != tt.wantKind {
				t.Errorf("%s: %v %v", tt.body, spec.Kind, err)
			}
			continue
		}
		var se *api.SpecError
		if !errors.As(err, &se) || se.Field != tt.wantField {
			t.Errorf("%s: err %v, want a problem with %q", tt.body, err, tt.wantField)
		}
	}
}

func TestParseWants(t *testing.T) {
	if _, err := ParseWants([]string{"a:namespaces/x/pods", "a:namespaces/y/pods"}, "app", 4); err == nil {
		t.Error("a name twice accepted")
	}
	var tm *TooManyError
	if _, err := ParseWants([]string{"a:namespaces/x/pods", "b:namespaces/y/pods"}, "app", 1); !errors.As(err, &tm) {
		t.Errorf("too many: %v", err)
	}
	ws, err := ParseWants([]string{"a:namespaces/x/pods", "b:namespaces/y/pods/p/log"}, "app", 2)
	if err != nil || len(ws) != 2 || ws[1].Spec.Kind != api.KindPodLog || ws[0].Carried {
		t.Fatalf("%+v %v", ws, err)
	}
}

func FuzzParseBody(f *testing.F) {
	f.Add([]byte(`{"name":"pods","path":"namespaces/shop/pods?app=web"}`))
	f.Add([]byte(`{"name":"l","path":"namespaces/a/pods/p/log?sinceTime=2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"name":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, spec, err := ParseBody(body, "app")
		if err != nil {
			var se *api.SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error of another type: %v", err)
			}
			return
		}
		if ValidName(req.Name) != nil || spec.Namespace == "" {
			t.Fatalf("accepted %+v %+v", req, spec)
		}
	})
}

func FuzzParseQuery(f *testing.F) {
	f.Add("pods:namespaces/shop/pods?app=web")
	f.Add("l:clusters/x/namespaces/a/pods/p/log")
	f.Add(":")
	f.Add("a:b:c")
	f.Fuzz(func(t *testing.T, v string) {
		req, spec, err := ParseQuery(v, "app")
		if err == nil && (ValidName(req.Name) != nil || spec.Kind == "") {
			t.Fatalf("accepted %q as %+v", v, req)
		}
	})
}
