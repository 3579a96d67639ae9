package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dwp-sre/dwp-sre/internal/apidocs"
	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
)

// docsOperations reads the operations Swagger UI lists: method and path of each .opblock.
const docsOperations = `JSON.stringify([...document.querySelectorAll("#swagger-ui .opblock")].map(b => ({
	method: ((b.querySelector(".opblock-summary-method") || {}).textContent || "").toLowerCase(),
	path: (b.querySelector(".opblock-summary-path") || {dataset: {}}).dataset.path || "",
})))`

type docsOperation struct{ Method, Path string }

// Must show: the router's /docs renders in headless Chromium under its
// Content-Security-Policy, without errors, and lists every operation of the router's
// document. The screenshot is the test's artifact.
func TestDocsInBrowser(t *testing.T) {
	if !apidocs.Built() {
		t.Fatal("the API reference's assets are not built: run make apidocs (make test does)")
	}
	t.Parallel()
	env := clustertest.Get(t)
	r := startRouter(t, env, nil)

	b, err := api.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatal(err)
	}
	var want []docsOperation
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			want = append(want, docsOperation{strings.ToLower(method), path})
		}
	}
	less := func(a, b docsOperation) int { return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method) }
	slices.SortFunc(want, less)

	bctx := browsertest.New(t, chromedp.WindowSize(1280, 1024))
	problems := browsertest.Watch(t, bctx)
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(r.URL+server.DocsPath)); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelectorAll("#swagger-ui .opblock").length >= %d`, len(want)), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		raw, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
		t.Fatalf("the operations were not listed: %v; the page shows: %s", err, raw)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](docsOperations))
	if err != nil {
		t.Fatal(err)
	}
	var got []docsOperation
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, less)
	if !slices.Equal(got, want) {
		t.Errorf("the page lists %d operations, the document has %d", len(got), len(want))
		for _, op := range want {
			if !slices.Contains(got, op) {
				t.Errorf("not listed: %s %s", op.Method, op.Path)
			}
		}
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "router-docs.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the router's %s (%d operations listed): %s", server.DocsPath, len(got), shot)
	for _, p := range problems.List() {
		t.Errorf("the page reported: %s", p)
	}
}
