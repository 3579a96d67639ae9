// Package apidocs serves an interactive reference of an OpenAPI document: Swagger UI
// (the npm package swagger-ui-dist, pinned by package-lock.json) with the service's own
// document, on a page whose Content-Security-Policy lets it load nothing but its own
// scripts and styles and talk to nothing but its own origin.
//
// Swagger UI's files are not in the repository: `make apidocs` (a dependency of make build,
// run and test) runs npm ci and copies the files the page needs into dist/, which is
// embedded. A binary built without them still compiles and serves a clear 503.
//
// A service mounts one Handler at a path and at every path under it, e.g. with httprouter:
//
//	h := apidocs.Handler("/api/v1/openapi.json")
//	router.Handler(http.MethodGet, "/docs", h)
//	router.Handler(http.MethodGet, "/docs/*asset", h)
//
// The page needs no token; "Authorize" takes one to try operations from it.
package apidocs

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/internal/webasset"
)

// CSP is the Content-Security-Policy of the page and its assets. Swagger UI runs without
// inline scripts or eval, sets styles through the DOM (which style-src does not govern)
// and shows its icons as data: images; "Try it out" fetches from the page's origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Assets are the file names of Swagger UI's files the page loads, which `make apidocs`
// copies into dist/ (with the package's LICENSE and NOTICE).
var Assets = []string{"swagger-ui-bundle.js", "swagger-ui.css"}

//go:embed dist
var dist embed.FS

//go:embed init.js
var initJS []byte

// initAsset is the page's own script, which starts Swagger UI.
const initAsset = "init.js"

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>API reference</title>
<link rel="stylesheet" href="{{.Base}}swagger-ui.css">
<script src="{{.Base}}swagger-ui-bundle.js" defer></script>
<script src="{{.Base}}init.js" defer></script>
</head>
<body>
<div id="swagger-ui" data-spec-url="{{.Spec}}"></div>
</body>
</html>
`))

// Built reports whether Swagger UI's files were built into the binary.
func Built() bool { return built(distFS()) }

func distFS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is a valid directory name
	}
	return sub
}

func built(files fs.FS) bool { return webasset.Built(files, Assets) }

// Handler serves the reference of the document at specPath (a URL path or URL the
// browser fetches, e.g. "/api/v1/openapi.json"). A request whose last path segment names
// an asset gets the asset; one whose last segment has no dot gets the page, which refers
// to its assets relative to itself, so the handler works under any mount path; anything
// else is 404. Only GET and HEAD are served. Without built assets every request is
// answered 503 (problem+json) saying so.
func Handler(specPath string) http.Handler { return handler(distFS(), specPath) }

func handler(files fs.FS, specPath string) http.Handler {
	assets, ready := webasset.Load(files, Assets)
	assets[initAsset] = webasset.New(initJS, "text/javascript; charset=utf-8")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !webasset.Guard(w, r, CSP) {
			return
		}
		if !ready {
			problem.Write(w, problem.New(http.StatusServiceUnavailable,
				"the API reference's assets were not built into this binary: build it with make (make apidocs), which copies Swagger UI into internal/apidocs/dist"))
			return
		}
		name := path.Base(r.URL.Path)
		if strings.HasSuffix(r.URL.Path, "/") {
			name = ""
		}
		if a, ok := assets[name]; ok {
			a.Serve(w, r)
			return
		}
		if strings.Contains(name, ".") {
			problem.Write(w, problem.NotFound("no asset "+name+" in the API reference"))
			return
		}
		// Assets are named relative to the page: from /docs, "docs/x"; from /docs/, "x".
		base := ""
		if name != "" {
			base = name + "/"
		}
		webasset.Page(w, r, func(b *bytes.Buffer) error {
			return page.Execute(b, struct{ Base, Spec string }{base, specPath})
		})
	})
}
