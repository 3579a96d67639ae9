package function

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/julienschmidt/httprouter"
)

// servedDocument is the OpenAPI document as GET /api/v1/openapi.json serves it.
func servedDocument(t *testing.T, f *Function) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	f.Handle(rec, httptest.NewRequest(http.MethodGet, OpenAPIPath, nil))
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", OpenAPIPath, rec.Code, rec.Header().Get("Content-Type"))
	}
	return rec.Body.Bytes()
}

// TestOpenAPIIsValid validates the served document as OpenAPI 3.0 with kin-openapi (every
// schema, parameter, response and $ref; no unknown member, such as one an unquoted comma
// in a YAML flow mapping makes), and checks that every tag used is declared.
func TestOpenAPIIsValid(t *testing.T) {
	f := startReal(t)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(servedDocument(t, f))
	if err != nil {
		t.Fatalf("the served document does not load: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi %q, want 3.0.x", doc.OpenAPI)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Errorf("the served document is not valid OpenAPI: %v", err)
	}
	declared := map[string]bool{}
	for _, tag := range doc.Tags {
		declared[tag.Name] = true
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if len(op.Tags) == 0 {
				t.Errorf("%s %s has no tag", method, path)
			}
			for _, tag := range op.Tags {
				if !declared[tag] {
					t.Errorf("%s %s: tag %q is not declared in the document's tags", method, path, tag)
				}
			}
		}
	}
}

// route is one route as registered with httprouter: a method and a pattern (:name, *name).
type route struct{ method, pattern string }

func (r route) String() string { return r.method + " " + r.pattern }

var (
	routeParam   = regexp.MustCompile(`[:*]([A-Za-z0-9_]+)`)
	openAPIParam = regexp.MustCompile(`\{([A-Za-z0-9_]+)\}`)
)

// openAPIPath is a route's pattern as an OpenAPI path: /a/:b/*c → /a/{b}/{c}.
func openAPIPath(pattern string) string { return routeParam.ReplaceAllString(pattern, "{$1}") }

// TestRoutesMatchOpenAPI checks that every route the function serves is documented and
// that every documented operation is served, at the same pattern (parameter names too).
// httprouter lists no routes, so the routes are read from the source: every call
// registering a route on an *httprouter.Router parameter, in the function's package and
// its families' packages; each is then confirmed with the started router's Lookup, so a
// route read but not served fails, and a router used in a way the reader cannot follow
// fails too, rather than hiding a route.
func TestRoutesMatchOpenAPI(t *testing.T) {
	f := startReal(t)
	router := f.router

	dirs := []string{"."}
	const module = "github.com/dwp-sre/dwp-sre/"
	for _, fam := range f.started {
		pkg := reflect.TypeOf(fam).Elem().PkgPath()
		rel, ok := strings.CutPrefix(pkg, module)
		if !ok {
			t.Fatalf("family %T is outside the module", fam)
		}
		dirs = append(dirs, filepath.FromSlash(rel))
	}
	var routed []route
	for _, dir := range dirs {
		rs, errs := routesInSource(dir)
		for _, err := range errs {
			t.Error(err)
		}
		routed = append(routed, rs...)
	}
	if len(routed) < 10 {
		t.Fatalf("only %d routes read from the source: %v", len(routed), routed)
	}

	loader := openapi3.NewLoader()
	d, err := loader.LoadFromData(servedDocument(t, f))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[route]bool{}
	for path, item := range d.Paths.Map() {
		for method := range item.Operations() {
			documented[route{method, path}] = true
		}
	}

	served := map[route]bool{}
	for _, r := range routed {
		if !servedAt(t, router, r.method, r.pattern, routeParam) {
			t.Errorf("route %s is registered in the source but not served", r)
		}
		served[route{r.method, openAPIPath(r.pattern)}] = true
		if !documented[route{r.method, openAPIPath(r.pattern)}] {
			t.Errorf("route %s is not in the OpenAPI document (as %s %s)", r, r.method, openAPIPath(r.pattern))
		}
	}
	for _, op := range slices.SortedFunc(maps.Keys(documented), func(a, b route) int { return strings.Compare(a.String(), b.String()) }) {
		if !servedAt(t, router, op.method, op.pattern, openAPIParam) {
			t.Errorf("documented operation %s is not served", op)
		} else if !served[op] {
			t.Errorf("documented operation %s is served by a route the source reader did not find", op)
		}
	}
}

// servedAt reports whether router serves method at pattern exactly: a path made of the
// pattern with a distinct value for each parameter finds a handle, with the pattern's
// parameters, each bound to its own value.
func servedAt(t *testing.T, router *httprouter.Router, method, pattern string, param *regexp.Regexp) bool {
	t.Helper()
	var names []string
	path := param.ReplaceAllStringFunc(pattern, func(m string) string {
		name := param.FindStringSubmatch(m)[1]
		names = append(names, name)
		return "v" + strconv.Itoa(len(names)) + "-" + name
	})
	handle, ps, _ := router.Lookup(method, path)
	if handle == nil || len(ps) != len(names) {
		return false
	}
	for i, p := range ps {
		// A catch-all parameter's value keeps its leading slash.
		if p.Key != names[i] || strings.TrimPrefix(p.Value, "/") != "v"+strconv.Itoa(i+1)+"-"+names[i] {
			return false
		}
	}
	return true
}

// routerMethods are httprouter's registration methods: by method name, or (Handle,
// Handler, HandlerFunc) with the method as first argument.
var routerMethods = map[string]string{
	"GET": http.MethodGet, "HEAD": http.MethodHead, "OPTIONS": http.MethodOptions, "POST": http.MethodPost,
	"PUT": http.MethodPut, "PATCH": http.MethodPatch, "DELETE": http.MethodDelete,
	"Handle": "", "Handler": "", "HandlerFunc": "",
}

// routerFields are the Router's settings a function may assign; they register no route.
var routerFields = map[string]bool{
	"NotFound": true, "MethodNotAllowed": true, "PanicHandler": true, "GlobalOPTIONS": true,
	"RedirectTrailingSlash": true, "RedirectFixedPath": true, "HandleMethodNotAllowed": true, "HandleOPTIONS": true,
}

// routesInSource reads the routes registered in the package in dir: in every function
// with an *httprouter.Router parameter, each registration call on that parameter, whose
// method and path are string constants (literals, the package's constants, net/http's
// method names, and sums of them).
func routesInSource(dir string) ([]route, []error) {
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, []error{err}
	}
	var files []*ast.File
	consts := map[string]ast.Expr{}
	for _, name := range matches {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, []error{err}
		}
		files = append(files, file)
		for _, decl := range file.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok && gd.Tok == token.CONST {
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							consts[n.Name] = vs.Values[i]
						}
					}
				}
			}
		}
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, err := strconv.Unquote(e.Value)
				return s, err == nil
			}
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return eval(v)
			}
		case *ast.SelectorExpr:
			if x, ok := e.X.(*ast.Ident); ok && x.Name == "http" && strings.HasPrefix(e.Sel.Name, "Method") {
				return strings.ToUpper(strings.TrimPrefix(e.Sel.Name, "Method")), true
			}
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X)
				b, ok2 := eval(e.Y)
				return a + b, ok1 && ok2
			}
		case *ast.ParenExpr:
			return eval(e.X)
		}
		return "", false
	}

	var out []route
	var errs []error
	for _, file := range files {
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			for _, field := range fn.Type.Params.List {
				if !isRouterType(field.Type) {
					continue
				}
				if len(field.Names) == 0 || field.Names[0].Name == "_" {
					continue // an unnamed router is not used
				}
				rs, es := registrations(fset, fn.Body, field.Names[0].Name, eval)
				out, errs = append(out, rs...), append(errs, es...)
			}
		}
	}
	return out, errs
}

func isRouterType(e ast.Expr) bool {
	star, ok := e.(*ast.StarExpr)
	if !ok {
		return false
	}
	sel, ok := star.X.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "httprouter" && sel.Sel.Name == "Router"
}

// registrations reads the routes registered on the router named param in body. Any other
// use of the router, but passing it to a function (every function taking a router is read
// too), is an error.
func registrations(fset *token.FileSet, body *ast.BlockStmt, param string, eval func(ast.Expr) (string, bool)) ([]route, []error) {
	var out []route
	var errs []error
	understood := map[*ast.Ident]bool{}
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.CallExpr:
			for _, arg := range n.Args {
				if id, ok := arg.(*ast.Ident); ok && id.Name == param {
					understood[id] = true
				}
			}
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			recv, ok := sel.X.(*ast.Ident)
			if !ok || recv.Name != param {
				return true
			}
			method, known := routerMethods[sel.Sel.Name]
			if !known {
				return true // reported below as a use not understood
			}
			understood[recv] = true
			args := n.Args
			if method == "" {
				if len(args) < 1 {
					return true
				}
				m, ok := eval(args[0])
				if !ok {
					errs = append(errs, fmt.Errorf("%s: the method of this route is not a constant", fset.Position(n.Pos())))
					return true
				}
				method, args = m, args[1:]
			}
			if len(args) < 1 {
				return true
			}
			path, ok := eval(args[0])
			if !ok {
				errs = append(errs, fmt.Errorf("%s: the path of this route is not a constant", fset.Position(n.Pos())))
				return true
			}
			out = append(out, route{method, path})
		case *ast.AssignStmt:
			for _, lhs := range n.Lhs {
				if sel, ok := lhs.(*ast.SelectorExpr); ok && routerFields[sel.Sel.Name] {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == param {
						understood[id] = true
					}
				}
			}
		}
		return true
	})
	ast.Inspect(body, func(n ast.Node) bool {
		if id, ok := n.(*ast.Ident); ok && id.Name == param && !understood[id] {
			errs = append(errs, fmt.Errorf("%s: a use of the router %s the route reader cannot follow", fset.Position(id.Pos()), param))
		}
		return true
	})
	return out, errs
}

// The route reader finds what it must, and refuses what it cannot follow.
func TestRoutesInSource(t *testing.T) {
	dir := t.TempDir()
	src := `package p

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
)

const base = "/api/v1"

func routes(r *httprouter.Router, h httprouter.Handle) {
	r.GET(base+"/things/:id", h)
	r.Handler(http.MethodPost, "/events", nil)
	r.NotFound = nil
	more(r)
}

func more(rt *httprouter.Router) { rt.Handle("PUT", "/x/*rest", nil) }
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	rs, errs := routesInSource(dir)
	if got := fmt.Sprint(rs, errs); got != "[GET /api/v1/things/:id POST /events PUT /x/*rest] []" {
		t.Errorf("read %s", got)
	}

	bad := `package p

import "github.com/julienschmidt/httprouter"

var kept *httprouter.Router

func routes(r *httprouter.Router, path string) {
	r.GET(path, nil)
	kept = r
}
`
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errs = routesInSource(dir)
	if got := fmt.Sprint(errs); len(errs) != 2 || !strings.Contains(got, "path of this route is not a constant") || !strings.Contains(got, "cannot follow") {
		t.Errorf("a route with a variable path and a router kept elsewhere: %v", errs)
	}
}
