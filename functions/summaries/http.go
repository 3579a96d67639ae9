package summaries

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/httpjson"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// requestTimeout is shorter than the server's 30 s write timeout.
const requestTimeout = 20 * time.Second

// AppList is the answer of a list: the summaries sorted by namespace, then app.
type AppList struct {
	Cluster string              `json:"cluster"`
	Items   []events.AppSummary `json:"items"`
}

type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, token string) error

// handle adapts authz.Serve, which every family's routes go through, to what this family's
// handlers take: the token (the workflows family's take a caller with its clients).
func (f *Family) handle(h handlerFunc) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		authz.Serve(w, r, requestTimeout, func(ctx context.Context, token string) error {
			return h(ctx, w, r, ps, token)
		})
	}
}

func namespaceError(field, ns string) *problem.FieldError {
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return &problem.FieldError{Field: field, Detail: strings.Join(msgs, "; ")}
	}
	return nil
}

func appError(app string) *problem.FieldError {
	if msgs := validation.IsValidLabelValue(app); app == "" || len(msgs) > 0 {
		if app == "" {
			msgs = []string{"must not be empty"}
		}
		return &problem.FieldError{Field: "app", Detail: "must be a label value: " + strings.Join(msgs, "; ")}
	}
	return nil
}

// noQuery rejects any query parameter: a misspelt filter must not look like an answer.
func noQuery(q url.Values) error {
	var errs []problem.FieldError
	for _, k := range slices.Sorted(maps.Keys(q)) {
		errs = append(errs, problem.FieldError{Field: k, Detail: "unknown query parameter; this operation takes none"})
	}
	if len(errs) > 0 {
		return problem.BadRequest("the query is invalid", errs...)
	}
	return nil
}

// MaxNamespaces bounds the namespaces of one list.
const MaxNamespaces = 50

// ParseNamespaces reads the query of GET /api/v1/apps: namespace, repeated and/or
// comma-separated, at least one and at most MaxNamespaces distinct ones. It returns them
// sorted, without duplicates.
func ParseNamespaces(q url.Values) ([]string, error) {
	var errs []problem.FieldError
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if k != "namespace" {
			errs = append(errs, problem.FieldError{Field: k, Detail: "unknown query parameter; known: namespace"})
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range q["namespace"] {
		for _, ns := range strings.Split(v, ",") {
			ns = strings.TrimSpace(ns)
			if seen[ns] {
				continue
			}
			seen[ns] = true
			if fe := namespaceError("namespace", ns); fe != nil {
				fe.Detail = fmt.Sprintf("%q: %s", ns, fe.Detail)
				errs = append(errs, *fe)
				continue
			}
			out = append(out, ns)
		}
	}
	switch {
	case len(out) == 0 && len(errs) == 0:
		errs = append(errs, problem.FieldError{Field: "namespace", Detail: "is required: one or more namespaces, repeated or separated by commas"})
	case len(seen) > MaxNamespaces:
		errs = append(errs, problem.FieldError{Field: "namespace", Detail: fmt.Sprintf("at most %d namespaces at once", MaxNamespaces)})
	}
	if len(errs) > 0 {
		return nil, problem.BadRequest("the query is invalid", errs...)
	}
	sort.Strings(out)
	return out, nil
}

func (f *Family) list(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, token string) error {
	ns := ps.ByName("namespace")
	if fe := namespaceError("namespace", ns); fe != nil {
		return problem.BadRequest("the path is invalid", *fe)
	}
	if err := noQuery(r.URL.Query()); err != nil {
		return err
	}
	return f.answerList(ctx, w, token, []string{ns})
}

func (f *Family) listMany(ctx context.Context, w http.ResponseWriter, r *http.Request, _ httprouter.Params, token string) error {
	nss, err := ParseNamespaces(r.URL.Query())
	if err != nil {
		return err
	}
	return f.answerList(ctx, w, token, nss)
}

func (f *Family) answerList(ctx context.Context, w http.ResponseWriter, token string, nss []string) error {
	var denied []string
	for _, ns := range nss {
		if err := f.access.canListPods(ctx, token, ns); err != nil {
			if p, ok := problem.As(err); ok && p.Status == http.StatusForbidden {
				denied = append(denied, ns)
				continue
			}
			return err
		}
	}
	switch {
	case len(denied) == 1:
		return problem.Forbidden(fmt.Sprintf("you may not list pods in namespace %q, so you may not see its apps", denied[0]))
	case len(denied) > 1:
		return problem.Forbidden(fmt.Sprintf("you may not list pods in namespaces %s, so you may not see their apps", strings.Join(denied, ", ")))
	}
	if err := f.notRebuilding(ctx); err != nil {
		return err
	}
	all, err := f.store.Summaries(ctx, f.cfg.Cluster, nss...)
	if err != nil {
		return err
	}
	out := AppList{Cluster: f.cfg.Cluster, Items: []events.AppSummary{}}
	for _, ns := range nss {
		list := all[ns]
		sort.Slice(list, func(i, j int) bool { return list[i].App < list[j].App })
		out.Items = append(out.Items, list...)
	}
	return httpjson.Write(w, http.StatusOK, out)
}

func (f *Family) get(ctx context.Context, w http.ResponseWriter, r *http.Request, ps httprouter.Params, token string) error {
	ns, app := ps.ByName("namespace"), ps.ByName("app")
	var errs []problem.FieldError
	if fe := namespaceError("namespace", ns); fe != nil {
		errs = append(errs, *fe)
	}
	if fe := appError(app); fe != nil {
		errs = append(errs, *fe)
	}
	if len(errs) > 0 {
		return problem.BadRequest("the path is invalid", errs...)
	}
	if err := noQuery(r.URL.Query()); err != nil {
		return err
	}
	if err := f.access.canListPods(ctx, token, ns); err != nil {
		return err
	}
	sum, ok, err := f.store.Summary(ctx, f.cfg.Cluster, ns, app)
	if err != nil {
		return err
	}
	if !ok {
		// Not found while rebuilding is no answer: the app may just not be back yet.
		if err := f.notRebuilding(ctx); err != nil {
			return err
		}
		return problem.NotFound(fmt.Sprintf("no app %q in namespace %q: no pod or workflow carries it", app, ns))
	}
	return httpjson.Write(w, http.StatusOK, sum)
}

// rebuildRetryAfter is the Retry-After of an answer while the summaries are rebuilt:
// the watcher notices the loss within a second and a round takes about as long.
const rebuildRetryAfter = 1

// notRebuilding fails with 503 and Retry-After while the summaries are being rebuilt
// (Redis lost them): a list then would look complete and be empty or partial.
func (f *Family) notRebuilding(ctx context.Context) error {
	rebuilding, err := f.store.Rebuilding(ctx, f.cfg.Cluster)
	if err != nil {
		return err
	}
	if rebuilding {
		p := problem.New(http.StatusServiceUnavailable, "the app summaries are being rebuilt (rebuilding) after they were lost; ask again shortly")
		p.Type = RebuildingType
		p.RetryAfter = rebuildRetryAfter
		return p
	}
	return nil
}

// RebuildingType is the problem type of an answer while the summaries are rebuilt.
const RebuildingType = "https://dwp.io/problems/summaries-rebuilding"
