package webasset

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"
)

func TestLoadServeAndGuard(t *testing.T) {
	files := fstest.MapFS{"app.js": {Data: []byte("x()")}, "app.css": {Data: []byte("a{}")}}
	if _, ok := Load(files, []string{"app.js", "gone.js"}); ok {
		t.Error("a missing file loaded")
	}
	if Built(files, []string{"gone.js"}) {
		t.Error("a missing file counted as built")
	}
	assets, ok := Load(files, []string{"app.js", "app.css"})
	if !ok || !Built(files, []string{"app.js", "app.css"}) {
		t.Fatal("the files did not load")
	}
	for name, ct := range map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"} {
		rec := httptest.NewRecorder()
		assets[name].Serve(rec, httptest.NewRequest(http.MethodGet, "/"+name, nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != ct || rec.Body.String() != string(files[name].Data) {
			t.Errorf("%s: %d %q %q", name, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		again := httptest.NewRequest(http.MethodGet, "/"+name, nil)
		again.Header.Set("If-None-Match", rec.Header().Get("ETag"))
		rec = httptest.NewRecorder()
		assets[name].Serve(rec, again)
		if rec.Code != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", name, rec.Code)
		}
	}
	for _, c := range []struct {
		method string
		goOn   bool
	}{{http.MethodGet, true}, {http.MethodHead, true}, {http.MethodPost, false}, {http.MethodDelete, false}} {
		rec := httptest.NewRecorder()
		if got := Guard(rec, httptest.NewRequest(c.method, "/", nil), "default-src 'none'"); got != c.goOn {
			t.Errorf("%s: go on %v, want %v", c.method, got, c.goOn)
		}
		if rec.Header().Get("Content-Security-Policy") != "default-src 'none'" || rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", c.method, rec.Header())
		}
		if !c.goOn && (rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD") {
			t.Errorf("%s: %d, Allow %q", c.method, rec.Code, rec.Header().Get("Allow"))
		}
	}
}
