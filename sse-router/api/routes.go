package api

import (
	"net/http"

	"github.com/julienschmidt/httprouter"
)

// Prefix is where the streams are served.
const Prefix = "/api/v1/stream"

// Route is one kind of stream's path, as an httprouter pattern under Prefix. Every
// route is also served under Prefix/clusters/:cluster for a cluster other than the
// default one.
type Route struct {
	Kind    Kind
	Pattern string
}

// Routes is the one table of the router's streams: the server registers it (Register)
// and multiplexed subscriptions are resolved through it (Lookup), so that a path means
// the same stream wherever it is given.
var Routes = []Route{
	{KindPods, "/namespaces/:namespace/pods"},
	{KindPodLog, "/namespaces/:namespace/pods/:name/log"},
	{KindWorkflows, "/namespaces/:namespace/workflows"},
	{KindWorkflow, "/namespaces/:namespace/workflows/:name"},
	{KindWorkflowLog, "/namespaces/:namespace/workflows/:name/log"},
	{KindEvents, "/namespaces/:namespace/events"},
	{KindPodMetrics, "/namespaces/:namespace/metrics/pods"},
	{KindApps, "/namespaces/:namespace/apps"},
	{KindApplication, "/namespaces/:namespace/apps/:app/application"},
}

// Registrar is where routes are registered: an httprouter.Router, or what wraps one.
type Registrar interface {
	GET(path string, h httprouter.Handle)
}

// Register adds every stream route to r under prefix (Prefix, or "" for paths as a
// multiplexed subscription gives them); serve answers the requests for a kind.
func Register(r Registrar, prefix string, serve func(Kind) httprouter.Handle) {
	for _, rt := range Routes {
		h := serve(rt.Kind)
		r.GET(prefix+rt.Pattern, h)
		r.GET(prefix+"/clusters/:cluster"+rt.Pattern, h)
	}
}

// lookup resolves stream paths; its handles only say which kind they serve.
var lookup = func() *httprouter.Router {
	r := httprouter.New()
	Register(r, "", func(k Kind) httprouter.Handle {
		return func(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
			w.(*resolution).kind = k
		}
	})
	return r
}()

// Lookup finds the stream at path (unescaped, under Prefix, with a leading slash).
func Lookup(path string) (Kind, httprouter.Params, bool) {
	h, ps, _ := lookup.Lookup(http.MethodGet, path)
	if h == nil {
		return "", nil, false
	}
	var res resolution
	h(&res, nil, ps)
	return res.kind, ps, true
}

// resolution receives a lookup handle's kind; it is never written to as a response.
type resolution struct{ kind Kind }

func (*resolution) Header() http.Header         { return http.Header{} }
func (*resolution) Write(b []byte) (int, error) { return len(b), nil }
func (*resolution) WriteHeader(int)             {}
