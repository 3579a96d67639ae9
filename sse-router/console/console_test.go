package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func files() fstest.MapFS {
	return fstest.MapFS{
		"console.js":    {Data: []byte("console.log(1)")},
		"console.css":   {Data: []byte("body{}")},
		"uPlot.min.css": {Data: []byte(".u{}")},
	}
}

func TestHandler(t *testing.T) {
	h := handler(files(), Options{API: "http://127.0.0.1:8080", Streams: "/api/v1/stream"})
	tests := []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/console/", 200, "text/html; charset=utf-8", `<meta name="dwp-api" content="http://127.0.0.1:8080">`},
		{"HEAD", "/console/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/console", 301, "", ""},
		{"GET", "/console/console.js", 200, "text/javascript; charset=utf-8", "console.log(1)"},
		{"GET", "/console/console.css", 200, "text/css; charset=utf-8", "body{}"},
		{"GET", "/console/uPlot.min.css", 200, "text/css; charset=utf-8", ".u{}"},
		{"GET", "/console/nothing.js", 404, "application/problem+json", "no file /nothing.js"},
		{"GET", "/console/../../etc/passwd", 404, "application/problem+json", ""},
		{"GET", "/console/sub/page", 404, "application/problem+json", ""},
		{"POST", "/console/", 405, "application/problem+json", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://router.example"+tt.path, nil)
			r.URL.Path = tt.path // as the router hands it over, unclean
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.contentType != "" && w.Header().Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type %q, want %q", w.Header().Get("Content-Type"), tt.contentType)
			}
			if !strings.Contains(w.Body.String(), tt.body) {
				t.Errorf("body %q lacks %q", w.Body, tt.body)
			}
			csp := w.Header().Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "connect-src 'self' http://127.0.0.1:8080;") {
				t.Errorf("CSP %q", csp)
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no nosniff")
			}
		})
	}
}

func TestPageEscapesItsSettings(t *testing.T) {
	h := handler(files(), Options{Streams: `/x"><script>alert(1)</script>`})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/console/", nil))
	if strings.Contains(w.Body.String(), "<script>alert") {
		t.Fatalf("setting not escaped: %s", w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("CSP without an API URL: %q", csp)
	}
}

func TestNotBuilt(t *testing.T) {
	h := handler(fstest.MapFS{"README.md": {Data: []byte("x")}}, Options{})
	for _, p := range []string{"/console/", "/console/console.js"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "make console") {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
}

func TestParseAPI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"https://api.example/", "https://api.example"},
		{"https://api.example/v1", "!"},
		{"ftp://api.example", "!"},
		{"api.example", "!"},
		{"https://u:p@api.example", "!"},
		{"https://api.example?x=1", "!"},
		{"https://api.example#x", "!"},
	}
	for _, tt := range tests {
		got, err := ParseAPI(tt.in)
		if tt.want == "!" {
			if err == nil {
				t.Errorf("%q: accepted as %q", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseAPI(f *testing.F) {
	f.Add("https://api.example:8443/")
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseAPI(v)
		if err != nil || got == "" {
			return
		}
		if again, err := ParseAPI(got); err != nil || again != got {
			t.Fatalf("%q → %q → %q, %v", v, got, again, err)
		}
		if strings.ContainsAny(got, " ;'\"") {
			t.Fatalf("%q would break the CSP: %q", v, got)
		}
	})
}
