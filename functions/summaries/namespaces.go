package summaries

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/julienschmidt/httprouter"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/httpjson"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

// Paging of GET /api/v1/namespaces.
const (
	// DefaultNamespaceLimit is the page size when the query gives no limit.
	DefaultNamespaceLimit = 50
	// MaxNamespaceLimit bounds limit: every namespace of a page costs an access review
	// (cached) and a Redis read.
	MaxNamespaceLimit = 200
	// maxExamined bounds the namespaces whose access one page reviews. A user who may see
	// few of many namespaces gets short (even empty) pages with a continue token rather
	// than one request reviewing the whole cluster.
	maxExamined = 500
	// reviewWorkers is how many access reviews of one page are asked at once.
	reviewWorkers = 8
	// namespaceListPageSize is the page size of the function's own namespace list.
	namespaceListPageSize = 500
)

// NamespaceList is the answer of GET /api/v1/namespaces: the namespaces the caller may
// see, sorted by name, each with its apps.
type NamespaceList struct {
	Cluster string          `json:"cluster"`
	Items   []NamespaceApps `json:"items"`
	// Continue, when set, asks for the next page; absent on the last page.
	Continue string `json:"continue,omitempty"`
}

// NamespaceApps is one namespace of a NamespaceList.
type NamespaceApps struct {
	Name string `json:"name"`
	// Apps are the names of the namespace's apps in the summaries, sorted.
	Apps []string `json:"apps"`
}

// NamespacePage is a parsed query of GET /api/v1/namespaces.
type NamespacePage struct {
	Limit int
	// After is the namespace the previous page ended with; empty for the first page.
	After string
}

// continuePrefix versions the continue token, so that a later format can tell old ones.
const continuePrefix = "n1:"

// EncodeContinue is the continue token of the page after namespace.
func EncodeContinue(namespace string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(continuePrefix + namespace))
}

// ParseNamespacePage reads the query of GET /api/v1/namespaces: limit (1 to
// MaxNamespaceLimit, default DefaultNamespaceLimit) and continue (a token from a previous
// page), each at most once, and nothing else. The token names the last namespace
// given, so it never expires: the next page starts after it, whatever was created or
// deleted meanwhile.
func ParseNamespacePage(q url.Values) (NamespacePage, error) {
	p := NamespacePage{Limit: DefaultNamespaceLimit}
	var errs []problem.FieldError
	for _, k := range slices.Sorted(maps.Keys(q)) {
		vs := q[k]
		switch {
		case k != "limit" && k != "continue":
			errs = append(errs, problem.FieldError{Field: k, Detail: "unknown query parameter; known: limit, continue"})
			continue
		case len(vs) != 1:
			errs = append(errs, problem.FieldError{Field: k, Detail: "must be given once"})
			continue
		}
		v := vs[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxNamespaceLimit {
				errs = append(errs, problem.FieldError{Field: k, Detail: fmt.Sprintf("must be a whole number from 1 to %d", MaxNamespaceLimit)})
				continue
			}
			p.Limit = n
		case "continue":
			ns, ok := decodeContinue(v)
			if !ok {
				errs = append(errs, problem.FieldError{Field: k, Detail: "is not a continue token of this list; give the one of the previous page, or none for the first"})
				continue
			}
			p.After = ns
		}
	}
	if len(errs) > 0 {
		return NamespacePage{}, problem.BadRequest("the query is invalid", errs...)
	}
	return p, nil
}

func decodeContinue(token string) (string, bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", false
	}
	ns, ok := strings.CutPrefix(string(b), continuePrefix)
	if !ok || namespaceError("continue", ns) != nil {
		return "", false
	}
	return ns, true
}

// namespaceLister lists the names of every namespace of the cluster.
type namespaceLister func(ctx context.Context) ([]string, error)

// listAllNamespaces lists the cluster's namespaces with the function's own credentials.
// All of them, paged by client-go's pager: which namespaces a user may see is decided by
// RBAC alone, so no label selector narrows the list (one would hide namespaces users
// have rights in); a cluster has thousands of namespaces at most, whose names are cheap
// to hold for one request. What a request costs is bounded by the access reviews of a
// page instead (maxExamined). The pager falls back to a full list if the continue token
// of the function's own paging expires.
func listAllNamespaces(cs kubernetes.Interface) namespaceLister {
	return func(ctx context.Context) ([]string, error) {
		p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Namespaces().List(ctx, opts)
		})
		p.PageSize = namespaceListPageSize
		var names []string
		err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
			m, err := metaName(obj)
			if err != nil {
				return err
			}
			names = append(names, m)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list namespaces with the function's credentials: %w", err)
		}
		slices.Sort(names)
		return slices.Compact(names), nil
	}
}

func metaName(obj runtime.Object) (string, error) {
	o, ok := obj.(metav1.Object)
	if !ok {
		return "", fmt.Errorf("list namespaces: item %T has no metadata", obj)
	}
	return o.GetName(), nil
}

// reviewError is the problem a client sees for a review that did not decide.
func reviewError(err error) error {
	switch {
	case errors.Is(err, authz.ErrNoToken):
		return problem.Unauthorized("a bearer token is required")
	case errors.Is(err, authz.ErrUnauthenticated):
		return problem.Unauthorized("the Kubernetes API server did not accept the bearer token")
	case errors.Is(err, authz.ErrBusy):
		p := problem.New(http.StatusServiceUnavailable, "too many access reviews at once; ask again shortly")
		p.RetryAfter = 1
		return p
	}
	if _, ok := problem.As(err); ok {
		return err
	}
	if _, ok := problem.FromKubernetes(err); ok {
		// The API server refused the function's own review: for the caller, an upstream failure.
		return fmt.Errorf("%w: %w", problem.New(http.StatusBadGateway, "the Kubernetes API server could not review the caller's access"), err)
	}
	return err
}

// listNamespaces answers GET /api/v1/namespaces: the namespaces whose pods the caller may
// list (what /api/v1/apps asks of each namespace it shows), each with its apps.
func (f *Family) listNamespaces(ctx context.Context, w http.ResponseWriter, r *http.Request, _ httprouter.Params, token string) error {
	page, err := ParseNamespacePage(r.URL.Query())
	if err != nil {
		return err
	}
	user, err := f.reviewer.Authenticate(ctx, token)
	if err != nil {
		return reviewError(err)
	}
	all, err := f.namespaces(ctx)
	if err != nil {
		if p, ok := problem.FromKubernetes(err); ok && p.Status < 500 {
			// The function's own credentials were refused: not the caller's doing.
			return fmt.Errorf("%w: %w", problem.New(http.StatusBadGateway, "the function may not list namespaces"), err)
		}
		return err
	}
	start, _ := slices.BinarySearch(all, page.After)
	if start < len(all) && all[start] == page.After {
		start++
	}
	visible, next, err := f.visibleNamespaces(ctx, user, all[start:], page.Limit)
	if err != nil {
		return err
	}
	if err := f.notRebuilding(ctx); err != nil {
		return err
	}
	out := NamespaceList{Cluster: f.cfg.Cluster, Items: make([]NamespaceApps, 0, len(visible)), Continue: next}
	if len(visible) > 0 {
		sums, err := f.store.Summaries(ctx, f.cfg.Cluster, visible...)
		if err != nil {
			return err
		}
		for _, ns := range visible {
			apps := make([]string, 0, len(sums[ns]))
			for _, s := range sums[ns] {
				apps = append(apps, s.App)
			}
			slices.Sort(apps)
			out.Items = append(out.Items, NamespaceApps{Name: ns, Apps: apps})
		}
	}
	return httpjson.Write(w, http.StatusOK, out)
}

// visibleNamespaces reviews candidates in order, a few at once, until limit of them are
// visible or maxExamined were reviewed. next is the continue token when candidates remain.
func (f *Family) visibleNamespaces(ctx context.Context, user authz.User, candidates []string, limit int) (visible []string, next string, err error) {
	examined := 0
	for examined < len(candidates) && examined < maxExamined && len(visible) < limit {
		batch := candidates[examined:min(len(candidates), examined+reviewWorkers, maxExamined)]
		allowed := make([]bool, len(batch))
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		for i, ns := range batch {
			wg.Go(func() {
				err := f.reviewer.Authorize(ctx, user, authz.Attributes{Namespace: ns, Verb: "list", Resource: "pods"})
				var fe *authz.ForbiddenError
				switch {
				case err == nil:
					allowed[i] = true
				case !errors.As(err, &fe):
					errs[i] = err
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, "", reviewError(err)
			}
		}
		for i, ns := range batch {
			examined++
			if allowed[i] {
				visible = append(visible, ns)
				if len(visible) == limit {
					break
				}
			}
		}
	}
	if examined < len(candidates) {
		next = EncodeContinue(candidates[examined-1])
	}
	return visible, next, nil
}
