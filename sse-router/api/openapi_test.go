package api_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/api/apitest"
)

// routeParam matches an httprouter parameter (":name") in a pattern.
var routeParam = regexp.MustCompile(`:([A-Za-z]+)`)

func openAPIPath(pattern string) string { return routeParam.ReplaceAllString(pattern, "{$1}") }

// parameters are an operation's parameters with its path item's, by location.
func parameters(item *openapi3.PathItem, op *openapi3.Operation) map[string][]string {
	out := map[string][]string{}
	for _, ps := range []openapi3.Parameters{item.Parameters, op.Parameters} {
		for _, p := range ps {
			out[p.Value.In] = append(out[p.Value.In], p.Value.Name)
		}
	}
	for _, names := range out {
		slices.Sort(names)
	}
	return out
}

// Every stream of the route table is documented in both forms, with the path and query
// parameters the Spec parser takes, its resume id, and the events it sends.
func TestOpenAPIStreams(t *testing.T) {
	doc := apitest.Doc(t)
	for _, rt := range api.Routes {
		for _, pattern := range []string{api.Prefix + rt.Pattern, api.Prefix + "/clusters/:cluster" + rt.Pattern} {
			path := openAPIPath(pattern)
			item := doc.Paths.Value(path)
			if item == nil {
				t.Errorf("%s (%s): no path item", path, rt.Kind)
				continue
			}
			ops := item.Operations()
			if len(ops) != 1 || ops[http.MethodGet] == nil {
				t.Errorf("%s: operations %v, want GET alone", path, slices.Collect(maps.Keys(ops)))
				continue
			}
			op := ops[http.MethodGet]
			ps := parameters(item, op)
			var wantPath []string
			for _, m := range routeParam.FindAllStringSubmatch(pattern, -1) {
				wantPath = append(wantPath, m[1])
			}
			slices.Sort(wantPath)
			if !slices.Equal(ps["path"], wantPath) {
				t.Errorf("%s: path parameters %v, want %v", path, ps["path"], wantPath)
			}
			wantQuery := append(slices.Clone(api.AllowedParams[rt.Kind]), "lastEventId")
			slices.Sort(wantQuery)
			if !slices.Equal(ps["query"], wantQuery) {
				t.Errorf("%s: query parameters %v, want %v (the Spec parser's)", path, ps["query"], wantQuery)
			}
			if !slices.Equal(ps["header"], []string{"Last-Event-ID"}) {
				t.Errorf("%s: header parameters %v, want Last-Event-ID", path, ps["header"])
			}
			checkStreamResponse(t, doc, path, op)
		}
	}
}

// checkStreamResponse checks that an operation's 200 is an event stream whose schema is
// the union of the schemas its x-sse-events name, each of them defined.
func checkStreamResponse(t *testing.T, doc *openapi3.T, path string, op *openapi3.Operation) {
	t.Helper()
	events := apitest.Events(t, op)
	if len(events) == 0 {
		t.Errorf("%s: no x-sse-events", path)
		return
	}
	ok := op.Responses.Value("200")
	if ok == nil || ok.Value.Content.Get("text/event-stream") == nil {
		t.Errorf("%s: 200 is not text/event-stream", path)
		return
	}
	union := ok.Value.Content.Get("text/event-stream").Schema.Value
	var got []string
	for _, s := range union.OneOf {
		got = append(got, strings.TrimPrefix(s.Ref, "#/components/schemas/"))
	}
	want := slices.Sorted(maps.Values(events))
	want = slices.Compact(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("%s: the stream's schema is one of %v, its events' are %v", path, got, want)
	}
	for name, schema := range events {
		if _, ok := doc.Components.Schemas[schema]; !ok {
			t.Errorf("%s: event %s: no schema %s", path, name, schema)
		}
	}
}

// constants reads the string constants of a file of this package whose names start
// with prefix: the document must follow the code, not a copy of it.
func constants(t *testing.T, file, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[n.Name] = v
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s… constants in %s", prefix, file)
	}
	return out
}

// Every event name the router sends is documented as some stream's event, and the error
// codes are the documented ones.
func TestOpenAPIEventNames(t *testing.T) {
	doc := apitest.Doc(t)
	documented := map[string]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for name := range apitest.Events(t, op) {
				documented[name] = true
			}
		}
	}
	for c, name := range constants(t, "payload.go", "Event") {
		if !documented[name] {
			t.Errorf("event %q (%s) is not documented in any x-sse-events", name, c)
		}
	}
	if api.EndID != "end" || !strings.Contains(doc.Info.Description, "id `end`") {
		t.Errorf("the end id %q is not the documented one", api.EndID)
	}

	var enum []string
	for _, v := range apitest.Schema(t, doc, "StreamError").Properties["code"].Value.Enum {
		enum = append(enum, v.(string))
	}
	codes := slices.Collect(maps.Values(constants(t, "payload.go", "Code")))
	slices.Sort(codes)
	slices.Sort(enum)
	if !slices.Equal(codes, enum) {
		t.Errorf("error codes %v, documented %v", codes, enum)
	}
}

func TestOpenAPIPayloads(t *testing.T) {
	doc := apitest.Doc(t)
	apitest.CheckFields(t, doc, "StreamError", api.ErrorPayload{})
	apitest.CheckFields(t, doc, "End", api.EndPayload{})
}

// The documented limits of the resume ids are the parser's.
func TestOpenAPIResumeIDs(t *testing.T) {
	doc := apitest.Doc(t)
	p := doc.Components.Parameters["LastEventID"].Value
	limit := int(*p.Schema.Value.MaxLength)
	if _, err := api.ParseResume(api.KindPods, strings.Repeat("1", limit)); err != nil {
		t.Errorf("an id of the documented maximum length is refused: %v", err)
	}
	if _, err := api.ParseResume(api.KindPods, strings.Repeat("1", limit+1)); err == nil {
		t.Errorf("an id longer than documented (%d) is accepted", limit)
	}
	for _, id := range []string{"1767225600000000000", "1767225600000000000.2"} {
		if _, err := api.ParseResume(api.KindPodLog, id); err != nil {
			t.Errorf("the documented log position %s is refused: %v", id, err)
		}
	}
}
