package apidocs

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func TestHandler(t *testing.T) {
	files := fstest.MapFS{
		"swagger-ui-bundle.js": {Data: []byte("var SwaggerUIBundle;")},
		"swagger-ui.css":       {Data: []byte("body{}")},
		"LICENSE":              {Data: []byte("licence")},
	}
	h := handler(files, "/api/v1/openapi.json")
	for _, tc := range []struct {
		method, path string
		status       int
		contentType  string
		body         string
	}{
		{"GET", "/docs", 200, "text/html; charset=utf-8", `href="docs/swagger-ui.css"`},
		{"GET", "/docs", 200, "text/html; charset=utf-8", `data-spec-url="/api/v1/openapi.json"`},
		{"GET", "/docs/", 200, "text/html; charset=utf-8", `src="swagger-ui-bundle.js"`},
		{"HEAD", "/docs", 200, "text/html; charset=utf-8", ""},
		{"GET", "/x/api-docs", 200, "text/html; charset=utf-8", `src="api-docs/init.js"`},
		{"GET", "/docs/swagger-ui-bundle.js", 200, "text/javascript; charset=utf-8", "var SwaggerUIBundle;"},
		{"GET", "/docs/swagger-ui.css", 200, "text/css; charset=utf-8", "body{}"},
		{"GET", "/docs/init.js", 200, "text/javascript; charset=utf-8", "SwaggerUIBundle({"},
		{"GET", "/docs/LICENSE", 200, "text/html; charset=utf-8", "<!doctype html>"},
		{"GET", "/docs/other.js", 404, "application/problem+json", "no asset other.js"},
		{"GET", "/docs/../../etc/passwd.txt", 404, "application/problem+json", "no asset"},
		{"POST", "/docs", 405, "application/problem+json", "allowed: GET, HEAD"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || rec.Header().Get("Content-Type") != tc.contentType || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %s %q, want %d %s with %q", tc.method, tc.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.status, tc.contentType, tc.body)
		}
		if rec.Header().Get("Content-Security-Policy") != CSP || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: headers %v", tc.method, tc.path, rec.Header())
		}
	}

	// An asset is revalidated by its ETag.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/docs/swagger-ui.css", nil))
	req := httptest.NewRequest("GET", "/docs/swagger-ui.css", nil)
	req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d", rec.Code)
	}
}

func TestHandlerWithoutAssets(t *testing.T) {
	h := handler(fstest.MapFS{"README.md": {Data: []byte("placeholder")}}, "/openapi.json")
	for _, p := range []string{"/docs", "/docs/swagger-ui-bundle.js", "/docs/init.js"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "make apidocs") ||
			rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

// The embedded folder holds its placeholder in any build, so the package always compiles;
// Built says whether make filled it.
func TestEmbeddedFolder(t *testing.T) {
	if _, err := distFS().Open("README.md"); err != nil {
		t.Fatalf("the placeholder is not embedded: %v", err)
	}
	rec := httptest.NewRecorder()
	Handler("/openapi.json").ServeHTTP(rec, httptest.NewRequest("GET", "/docs", nil))
	if want := map[bool]int{true: 200, false: 503}[Built()]; rec.Code != want {
		t.Errorf("built %v: %d, want %d", Built(), rec.Code, want)
	}
}
