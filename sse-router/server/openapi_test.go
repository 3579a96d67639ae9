package server

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/internal/apidocs"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/api/apitest"
	"github.com/dwp-sre/dwp-sre/sse-router/session"
)

var (
	routeParam   = regexp.MustCompile(`[:*]([A-Za-z]+)`)
	openAPIParam = regexp.MustCompile(`\{([A-Za-z]+)\}`)
)

// Every route the router serves is documented, and every documented operation is served
// (found by the router's own lookup with sample values in its path parameters).
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	s, _ := startServer(t, testConfig(), newFakeCluster())
	doc := apitest.Doc(t)

	served := map[string]bool{}
	for _, rt := range s.router.routes {
		method, pattern, _ := strings.Cut(rt, " ")
		served[method+" "+routeParam.ReplaceAllString(pattern, "{$1}")] = true
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
			concrete := openAPIParam.ReplaceAllString(path, "x$1")
			if h, _, _ := s.router.Lookup(method, concrete); h == nil {
				t.Errorf("documented %s %s: the router serves nothing at %s", method, path, concrete)
			}
		}
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("served but not documented: %s", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("documented but not served: %s", r)
		}
	}
	if len(served) < 2*len(api.Routes)+8 {
		t.Fatalf("only %d routes recorded", len(served))
	}
}

// The connection-level events of streams are documented, and the payloads the server
// writes itself have the documented members.
func TestOpenAPIServerPayloads(t *testing.T) {
	doc := apitest.Doc(t)
	mux := doc.Paths.Value(api.Prefix + "/mux").Get
	events := apitest.Events(t, mux)
	for _, name := range []string{EventSession, EventReconnect, api.EventError} {
		if events[name] == "" {
			t.Errorf("the multiplexed stream's event %q is not documented", name)
		}
	}
	pods := apitest.Events(t, doc.Paths.Value(api.Prefix+"/namespaces/{namespace}/pods").Get)
	if pods[EventReconnect] == "" {
		t.Errorf("the streams' %q event is not documented", EventReconnect)
	}
	apitest.CheckFields(t, doc, "Reconnect", reconnectPayload{})
	apitest.CheckFields(t, doc, "Session", session.Payload{})
	apitest.CheckFields(t, doc, "SubscriptionRequest", session.Request{})
	apitest.CheckFields(t, doc, "Problem", problem.Problem{})
	apitest.CheckFields(t, doc, "FieldError", problem.FieldError{})
}

// The document and its interactive reference are served without a token.
func TestOpenAPIServed(t *testing.T) {
	_, ts := startServer(t, testConfig(), newFakeCluster())
	resp, err := http.Get(ts.URL + api.OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want, _ := api.OpenAPI()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(body, want) {
		t.Fatalf("%s: %d %s, %d bytes", api.OpenAPIPath, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}

	resp, err = http.Get(ts.URL + DocsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !apidocs.Built() {
		// A build without `make apidocs` says so rather than serving a broken page.
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Type") != problem.ContentType {
			t.Fatalf("%s without assets: %d %s", DocsPath, resp.StatusCode, body)
		}
		t.Logf("the reference's assets are not built (make apidocs): %s answers 503", DocsPath)
		return
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), `data-spec-url="`+api.OpenAPIPath+`"`) {
		t.Fatalf("%s: %d %s\n%s", DocsPath, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, asset := range slices.Concat(apidocs.Assets, []string{"init.js"}) {
		if !strings.Contains(string(body), asset) {
			t.Errorf("the page does not load %s", asset)
		}
		resp, err := http.Get(ts.URL + DocsPath + "/" + asset)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s/%s: %d", DocsPath, asset, resp.StatusCode)
		}
	}
}
