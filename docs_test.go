package function

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
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
)

// listedOperations reads the operations Swagger UI shows: one .opblock per operation,
// with its method, path and (displayOperationId) operationId.
const listedOperations = `JSON.stringify([...document.querySelectorAll("#swagger-ui .opblock")].map(b => ({
	method: (b.querySelector(".opblock-summary-method") || {}).textContent || "",
	path: (b.querySelector(".opblock-summary-path") || {dataset: {}}).dataset.path || "",
	id: ((b.querySelector(".opblock-summary-operation-id") || {}).textContent || "").trim(),
})))`

type listedOperation struct{ Method, Path, ID string }

// TestDocsInBrowser opens the function's /docs in headless Chromium, as a user would: the
// page loads Swagger UI and the function's own document under the page's
// Content-Security-Policy, with no error or violation, and lists every operation of the
// document. A screenshot of the page is kept as the test's artifact (go test -artifacts).
func TestDocsInBrowser(t *testing.T) {
	if !apidocs.Built() {
		t.Fatal("the API reference's assets are not built: run make apidocs (make test does)")
	}
	f := startReal(t)
	srv := httptest.NewServer(http.HandlerFunc(f.Handle))
	defer srv.Close()

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(servedDocument(t, f))
	if err != nil {
		t.Fatal(err)
	}
	var want []listedOperation
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			want = append(want, listedOperation{method, path, op.OperationID})
		}
	}
	less := func(a, b listedOperation) int { return strings.Compare(a.Path+" "+a.Method, b.Path+" "+b.Method) }
	slices.SortFunc(want, less)

	bctx := browsertest.New(t, chromedp.WindowSize(1280, 1024))
	// Errors and Content-Security-Policy violations reach the log or are thrown.
	problems := browsertest.Watch(t, bctx)

	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+DocsPath)); err != nil {
		t.Fatal(err)
	}
	// Swagger UI renders the operations once it has fetched and resolved the document.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf(
		`document.querySelectorAll("#swagger-ui .opblock").length >= %d`, len(want)), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		raw, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
		t.Fatalf("the operations were not listed: %v; the page shows: %s", err, raw)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](listedOperations))
	if err != nil {
		t.Fatal(err)
	}
	var got []listedOperation
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, less)
	if !slices.Equal(got, want) {
		t.Errorf("the page lists %d operations, the document has %d", len(got), len(want))
		for _, op := range want {
			if !slices.Contains(got, op) {
				t.Errorf("not listed: %s %s (%s)", op.Method, op.Path, op.ID)
			}
		}
		for _, op := range got {
			if !slices.Contains(want, op) {
				t.Errorf("listed but not in the document: %s %s (%s)", op.Method, op.Path, op.ID)
			}
		}
	}
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#swagger-ui .info .title") || {}).textContent || ""`))
	if err != nil || !strings.Contains(title, doc.Info.Title) {
		t.Errorf("the page's title %q (%v), want the document's %q", title, err, doc.Info.Title)
	}

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "docs.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s (%d operations listed): %s", DocsPath, len(got), shot)

	for _, p := range problems.List() {
		t.Errorf("the page reported: %s", p)
	}
}
