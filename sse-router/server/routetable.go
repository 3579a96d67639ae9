package server

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// routeRecorder registers routes on an httprouter.Router and remembers them, since
// httprouter cannot list its routes: the router's OpenAPI document is checked against
// what it serves.
type routeRecorder struct {
	*httprouter.Router
	// routes are "METHOD pattern", in httprouter's syntax.
	routes []string
}

func (r *routeRecorder) Handle(method, path string, h httprouter.Handle) {
	r.routes = append(r.routes, method+" "+path)
	r.Router.Handle(method, path, h)
}

func (r *routeRecorder) Handler(method, path string, h http.Handler) {
	r.routes = append(r.routes, method+" "+path)
	r.Router.Handler(method, path, h)
}

func (r *routeRecorder) GET(path string, h httprouter.Handle)   { r.Handle(http.MethodGet, path, h) }
func (r *routeRecorder) POST(path string, h httprouter.Handle)  { r.Handle(http.MethodPost, path, h) }
func (r *routeRecorder) PUT(path string, h httprouter.Handle)   { r.Handle(http.MethodPut, path, h) }
func (r *routeRecorder) PATCH(path string, h httprouter.Handle) { r.Handle(http.MethodPatch, path, h) }
func (r *routeRecorder) DELETE(path string, h httprouter.Handle) {
	r.Handle(http.MethodDelete, path, h)
}

// HandlerFunc is Handler for a function.
func (r *routeRecorder) HandlerFunc(method, path string, h http.HandlerFunc) {
	r.Handler(method, path, h)
}
