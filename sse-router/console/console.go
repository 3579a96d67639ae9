// Package console serves the web console: a portal page built on the public APIs alone
// (fetch to the task function, one multiplexed EventSource to this router per tab). It is
// also the end-to-end check of how a portal uses them.
//
// Its script and styles are bundled from src/ by esbuild, with uPlot for the metrics chart
// (npm packages pinned by package-lock.json), into dist/ by `make console`, a dependency
// of make build, run and test; dist/ is embedded and never committed. A binary built
// without it still compiles and answers 503 saying so.
//
// The router mounts one Handler at Path and at every path under it.
package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/internal/webasset"
)

// Path is where the console is served.
const Path = "/console"

// Assets are the files `make console` writes into dist/, which the page loads.
var Assets = []string{"console.js", "console.css", "uPlot.min.css"}

//go:embed dist
var dist embed.FS

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="dwp-api" content="{{.API}}">
<meta name="dwp-streams" content="{{.Streams}}">
<link rel="icon" href="data:,">
<title>dwp-sre console</title>
<link rel="stylesheet" href="{{.Base}}uPlot.min.css">
<link rel="stylesheet" href="{{.Base}}console.css">
<script src="{{.Base}}console.js" type="module"></script>
</head>
<body>
<div id="app" aria-live="polite"><p class="loading">Loading…</p></div>
</body>
</html>
`))

// Options configure the console.
type Options struct {
	// API is the task function's base URL (scheme://host[:port]) the page fetches from;
	// empty means the page's own origin (an ingress routing /api/v1 to the function).
	API string
	// Streams is the path prefix of this router's streams.
	Streams string
}

// Handler serves the page and its assets. opts.API must be empty or what ParseAPI returns.
func Handler(opts Options) http.Handler {
	files, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is a valid directory name
	}
	return handler(files, opts)
}

// ParseAPI reads the function's base URL: empty, or scheme://host[:port] with nothing after
// it but a slash, which is dropped.
func ParseAPI(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("the function's URL %q: want scheme://host[:port]", v)
	}
	// The origin goes into the page's Content-Security-Policy: a host name, an IP or
	// [IPv6], and a port, nothing that could end the directive.
	if strings.IndexFunc(u.Host, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c))
	}) >= 0 {
		return "", fmt.Errorf("the function's URL %q: the host holds characters a host name cannot", v)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Built reports whether the console's assets were built into the binary.
func Built() bool {
	files, err := fs.Sub(dist, "dist")
	return err == nil && built(files)
}

func built(files fs.FS) bool { return webasset.Built(files, Assets) }

// csp lets the page run its own script and styles only, and talk to its own origin and
// the function's. uPlot sets styles through the DOM, which style-src does not govern.
func csp(api string) string {
	connect := "'self'"
	if api != "" {
		connect += " " + api
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

func handler(files fs.FS, opts Options) http.Handler {
	policy := csp(opts.API)
	assets, ready := webasset.Load(files, Assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "DENY")
		if !webasset.Guard(w, r, policy) {
			return
		}
		if !ready {
			problem.Write(w, problem.New(http.StatusServiceUnavailable,
				"the console's assets were not built into this binary: build it with make (make console), which bundles sse-router/console/src into its dist/"))
			return
		}
		if r.URL.Path == Path {
			http.Redirect(w, r, Path+"/", http.StatusMovedPermanently)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Path+"/")
		if a, ok := assets[name]; ok {
			a.Serve(w, r)
			return
		}
		if name != "" {
			problem.Write(w, problem.NotFound("no file "+path.Clean("/"+name)+" in the console"))
			return
		}
		webasset.Page(w, r, func(b *bytes.Buffer) error {
			return page.Execute(b, struct{ Base, API, Streams string }{"", opts.API, opts.Streams})
		})
	})
}
