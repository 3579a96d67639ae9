package cors

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPolicy(t *testing.T) {
	p := Policy{
		Origins: []string{"https://portal.example"}, Setting: "DWP_CORS_ORIGINS",
		Methods: []string{"GET", "POST"}, Headers: []string{"Authorization"}, Expose: []string{"Location"},
	}
	served := false
	h := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served = true; w.WriteHeader(http.StatusTeapot) }))
	tests := []struct {
		name, method, origin, host, preflight string
		status                                int
		served                                bool
		allowOrigin                           string
	}{
		{"no origin", "POST", "", "api.example", "", http.StatusTeapot, true, ""},
		{"allowed origin", "POST", "https://portal.example", "api.example", "", http.StatusTeapot, true, "https://portal.example"},
		{"same origin", "POST", "http://api.example", "api.example", "", http.StatusTeapot, true, ""},
		{"foreign origin", "GET", "https://evil.example", "api.example", "", http.StatusForbidden, false, ""},
		{"foreign with an allowed prefix", "GET", "https://portal.example.evil", "api.example", "", http.StatusForbidden, false, ""},
		{"preflight allowed", "OPTIONS", "https://portal.example", "api.example", "POST", http.StatusNoContent, false, "https://portal.example"},
		{"preflight foreign", "OPTIONS", "https://evil.example", "api.example", "POST", http.StatusForbidden, false, ""},
		{"preflight same origin is not needed", "OPTIONS", "http://api.example", "api.example", "POST", http.StatusForbidden, false, ""},
		{"plain OPTIONS from an allowed origin reaches the service", "OPTIONS", "https://portal.example", "api.example", "", http.StatusTeapot, true, "https://portal.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served = false
			r := httptest.NewRequest(tt.method, "http://"+tt.host+"/x", nil)
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.preflight != "" {
				r.Header.Set("Access-Control-Request-Method", tt.preflight)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status || served != tt.served {
				t.Fatalf("status %d served %v, want %d %v (%s)", w.Code, served, tt.status, tt.served, w.Body)
			}
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != tt.allowOrigin {
				t.Errorf("Allow-Origin %q, want %q", got, tt.allowOrigin)
			}
			if got := w.Header().Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("credentials allowed (%q) by a policy without them", got)
			}
			if tt.status == http.StatusForbidden && w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("refusal is %q, not problem+json", w.Header().Get("Content-Type"))
			}
			if tt.preflight != "" && tt.status == http.StatusNoContent {
				if w.Header().Get("Access-Control-Allow-Methods") != "GET, POST" || w.Header().Get("Access-Control-Allow-Headers") != "Authorization" {
					t.Errorf("preflight headers %v", w.Header())
				}
			}
			if tt.allowOrigin != "" && tt.preflight == "" && w.Header().Get("Access-Control-Expose-Headers") != "Location" {
				t.Errorf("exposed %q", w.Header().Get("Access-Control-Expose-Headers"))
			}
		})
	}
}

func TestParseOrigins(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{" https://a.example , http://127.0.0.1:8090/ ", []string{"https://a.example", "http://127.0.0.1:8090"}, false},
		{"*", nil, true},
		{"portal.example", nil, true},
		{"ftp://portal.example", nil, true},
		{"https://portal.example/path", nil, true},
		{"https://user@portal.example", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseOrigins(tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("%q: err %v", tt.in, err)
			continue
		}
		if len(got) != len(tt.want) {
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
			}
		}
	}
}

func FuzzParseOrigins(f *testing.F) {
	f.Add("https://a.example,http://b:1/")
	f.Fuzz(func(t *testing.T, v string) {
		os, err := ParseOrigins(v)
		if err != nil {
			return
		}
		for _, o := range os {
			if o == "" || o[len(o)-1] == '/' {
				t.Fatalf("origin %q from %q", o, v)
			}
		}
	})
}
