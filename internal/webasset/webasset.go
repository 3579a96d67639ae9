// Package webasset serves the static files a service embeds for browsers (the /docs page,
// the console): each read once at start-up with its ETag, the same security headers on
// every answer, and GET and HEAD only.
package webasset

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Asset is one file's bytes, content type and ETag.
type Asset struct {
	body        []byte
	contentType string
	etag        string
}

// New makes an asset of body; its ETag is a hash of the bytes.
func New(body []byte, contentType string) Asset {
	sum := sha256.Sum256(body)
	return Asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
}

// Load reads the named files (scripts, or stylesheets by their .css suffix) from files;
// ok is false when any of them is missing, as in a binary built without its assets.
func Load(files fs.FS, names []string) (assets map[string]Asset, ok bool) {
	assets = make(map[string]Asset, len(names))
	for _, name := range names {
		b, err := fs.ReadFile(files, name)
		if err != nil {
			return assets, false
		}
		ct := "text/javascript; charset=utf-8"
		if strings.HasSuffix(name, ".css") {
			ct = "text/css; charset=utf-8"
		}
		assets[name] = New(b, ct)
	}
	return assets, true
}

// Built reports whether every named file is in files.
func Built(files fs.FS, names []string) bool {
	for _, name := range names {
		if _, err := fs.Stat(files, name); err != nil {
			return false
		}
	}
	return true
}

// Serve writes the asset, revalidated by its ETag on every use (no-cache).
func (a Asset) Serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Guard sets the security headers every answer carries, with csp as the
// Content-Security-Policy, and answers 405 to a method other than GET and HEAD; it
// reports whether the request may go on.
func Guard(w http.ResponseWriter, r *http.Request, csp string) bool {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		problem.Write(w, problem.Newf(http.StatusMethodNotAllowed, "%s is not allowed on %s (allowed: GET, HEAD)", r.Method, r.URL.Path))
		return false
	}
	return true
}

// Page serves a page rendered by render as HTML, revalidated on every use, or a 500 when
// rendering fails.
func Page(w http.ResponseWriter, r *http.Request, render func(*bytes.Buffer) error) {
	var b bytes.Buffer
	if err := render(&b); err != nil {
		problem.Write(w, problem.New(http.StatusInternalServerError, "internal error"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b.Bytes()))
}
