package api

import (
	"fmt"
	"github.com/julienschmidt/httprouter"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/authz"
	"github.com/dwp-sre/dwp-sre/internal/events"
)

// Kind is a kind of stream.
type Kind string

// The kinds of stream the router serves.
const (
	KindPods        Kind = "pods"         // pods of a namespace or an app: snapshot, then changes
	KindPodLog      Kind = "pod_log"      // one container's log
	KindWorkflows   Kind = "workflows"    // workflows of a namespace or an app
	KindWorkflow    Kind = "workflow"     // one workflow
	KindWorkflowLog Kind = "workflow_log" // the logs of all pods of one workflow, merged
	KindEvents      Kind = "events"       // Kubernetes events of a namespace or one object
	KindPodMetrics  Kind = "pod_metrics"  // metrics.k8s.io PodMetrics of a namespace or an app
	KindApps        Kind = "apps"         // app summaries of a namespace
	KindApplication Kind = "application"  // an app's Argo CD Application: sync, health, resources
)

// Spec is a parsed stream request: which stream, of which cluster and namespace, with
// which options. Every field is validated.
type Spec struct {
	Kind      Kind
	Cluster   string // "" for the default cluster
	Namespace string
	// Name is the pod or workflow.
	Name string
	// Container is the log's container ("" for a pod's default container).
	Container string
	// Selector is the watch's canonical label selector (app and labelSelector combined;
	// for an Application, the labels tying it to its app).
	Selector string
	// App is the app whose objects (or whose Argo CD Application) the stream shows ("" for
	// all).
	App string
	// EventKind and EventName select the object whose events are shown.
	EventKind, EventName string

	TailLines *int64
	SinceTime *time.Time
	Follow    bool

	// LastEventID is the `lastEventId` query parameter some EventSource polyfills send;
	// the Last-Event-ID header wins over it.
	LastEventID string
}

// MaxTailLines bounds tailLines.
const MaxTailLines = 100000

// SpecError is a request that names no stream or names one wrongly; Field says which part.
type SpecError struct {
	Field  string
	Detail string
	// NotFound is set when the path names no stream at all.
	NotFound bool
}

func (e *SpecError) Error() string { return e.Field + ": " + e.Detail }

func badParam(field, format string, args ...any) *SpecError {
	return &SpecError{Field: field, Detail: fmt.Sprintf(format, args...)}
}

// allowedParams lists each kind's query parameters.
var allowedParams = map[Kind][]string{
	KindPods:        {"app", "labelSelector"},
	KindPodLog:      {"container", "tailLines", "sinceTime", "follow"},
	KindWorkflows:   {"app", "labelSelector"},
	KindWorkflow:    {},
	KindWorkflowLog: {"container"},
	KindEvents:      {"kind", "name"},
	KindPodMetrics:  {"app", "labelSelector"},
	KindApps:        {},
	KindApplication: {},
}

// ParseSpec parses a stream path relative to /api/v1/stream/ (a leading "/api/v1/stream/"
// or "/" is accepted too) with its query. appLabel is the label that names a pod's or a
// workflow's app. Paths:
//
//	[clusters/{cluster}/]namespaces/{ns}/pods?app=&labelSelector=
//	[clusters/{cluster}/]namespaces/{ns}/pods/{pod}/log?container=&tailLines=&sinceTime=&follow=
//	[clusters/{cluster}/]namespaces/{ns}/workflows?app=&labelSelector=
//	[clusters/{cluster}/]namespaces/{ns}/workflows/{name}
//	[clusters/{cluster}/]namespaces/{ns}/workflows/{name}/log?container=
//	[clusters/{cluster}/]namespaces/{ns}/events?kind=&name=
//	[clusters/{cluster}/]namespaces/{ns}/metrics/pods?app=&labelSelector=
//	[clusters/{cluster}/]namespaces/{ns}/apps
//	[clusters/{cluster}/]namespaces/{ns}/apps/{app}/application
func ParseSpec(escapedPath string, q url.Values, appLabel string) (Spec, error) {
	p := strings.TrimPrefix(escapedPath, "/")
	p = strings.TrimPrefix(p, strings.TrimPrefix(Prefix, "/")+"/")
	p = strings.TrimSuffix(p, "/")
	notFound := &SpecError{Field: "path", Detail: fmt.Sprintf("no stream at %q", escapedPath), NotFound: true}
	// Segments are unescaped one by one: an escaped slash is part of a name (and makes
	// it invalid), not a separator.
	raw := strings.Split(p, "/")
	segs := make([]string, len(raw))
	for i, seg := range raw {
		u, err := url.PathUnescape(seg)
		if err != nil || u == "" {
			return Spec{}, notFound
		}
		segs[i] = strings.ReplaceAll(u, "/", "\x00")
	}
	kind, ps, ok := Lookup("/" + strings.Join(segs, "/"))
	if !ok {
		return Spec{}, notFound
	}
	for i := range ps {
		ps[i].Value = strings.ReplaceAll(ps[i].Value, "\x00", "/")
	}
	return NewSpec(kind, ps, q, appLabel)
}

// NewSpec is the spec of a stream of kind, from its route's parameters (unescaped) and
// its query.
func NewSpec(kind Kind, ps httprouter.Params, q url.Values, appLabel string) (Spec, error) {
	s := Spec{Kind: kind, Cluster: ps.ByName("cluster"), Namespace: ps.ByName("namespace"), Name: ps.ByName("name")}
	for _, p := range ps {
		if p.Value == "" {
			return Spec{}, &SpecError{Field: "path", Detail: "empty path segment", NotFound: true}
		}
	}
	if len(s.Cluster) > 253 || strings.IndexFunc(s.Cluster, unicode.IsControl) >= 0 {
		return Spec{}, badParam("cluster", "not a cluster name")
	}
	if errs := validation.IsDNS1123Label(s.Namespace); len(errs) > 0 {
		return Spec{}, badParam("namespace", "%s", strings.Join(errs, "; "))
	}
	if kind == KindApplication {
		s.App = ps.ByName("app")
		// As the task function names apps: the Application is "<namespace>.<app>", so an
		// app holds no dot.
		if errs := validation.IsDNS1123Label(s.App); len(errs) > 0 {
			return Spec{}, badParam("app", "%s", strings.Join(errs, "; "))
		}
		s.Selector = labels.SelectorFromSet(labels.Set{
			events.LabelAppNamespace: s.Namespace, events.LabelApp: s.App,
		}).String()
	}
	if s.Name != "" {
		if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
			return Spec{}, badParam("name", "%s", strings.Join(errs, "; "))
		}
	}
	if err := s.parseQuery(q, appLabel); err != nil {
		return Spec{}, err
	}
	return s, nil
}

func (s *Spec) parseQuery(q url.Values, appLabel string) error {
	allowed := allowedParams[s.Kind]
	for k, vs := range q {
		if k == "lastEventId" {
			if len(vs) != 1 {
				return badParam(k, "give it once")
			}
			s.LastEventID = vs[0]
			continue
		}
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return badParam(k, "unknown parameter: this stream takes none")
			}
			return badParam(k, "unknown parameter: this stream takes %s", strings.Join(allowed, ", "))
		}
		if len(vs) != 1 {
			return badParam(k, "give it once")
		}
	}
	s.Follow = true
	switch s.Kind {
	case KindPods, KindWorkflows, KindPodMetrics:
		sel := labels.Everything()
		if v := q.Get("labelSelector"); v != "" {
			parsed, err := labels.Parse(v)
			if err != nil {
				return badParam("labelSelector", "%v", err)
			}
			sel = parsed
		}
		if q.Has("app") {
			app := q.Get("app")
			if app == "" {
				return badParam("app", "must not be empty")
			}
			if errs := validation.IsValidLabelValue(app); len(errs) > 0 {
				return badParam("app", "%s", strings.Join(errs, "; "))
			}
			s.App = app
			req, err := labels.NewRequirement(appLabel, "=", []string{app})
			if err != nil {
				return badParam("app", "%v", err)
			}
			sel = sel.Add(*req)
		}
		s.Selector = sel.String()
	case KindPodLog, KindWorkflowLog:
		if q.Has("container") {
			c := q.Get("container")
			if errs := validation.IsDNS1123Label(c); len(errs) > 0 {
				return badParam("container", "%s", strings.Join(errs, "; "))
			}
			s.Container = c
		} else if s.Kind == KindWorkflowLog {
			s.Container = "main"
		}
		if q.Has("tailLines") {
			n, err := strconv.ParseInt(q.Get("tailLines"), 10, 64)
			if err != nil || n < 0 || n > MaxTailLines {
				return badParam("tailLines", "must be a whole number from 0 to %d", MaxTailLines)
			}
			s.TailLines = &n
		}
		if q.Has("sinceTime") {
			t, err := time.Parse(time.RFC3339Nano, q.Get("sinceTime"))
			if err != nil {
				return badParam("sinceTime", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			}
			s.SinceTime = &t
		}
		if s.TailLines != nil && s.SinceTime != nil {
			return badParam("tailLines", "give tailLines or sinceTime, not both")
		}
		if q.Has("follow") {
			f, err := strconv.ParseBool(q.Get("follow"))
			if err != nil {
				return badParam("follow", "must be true or false")
			}
			s.Follow = f
		}
	case KindEvents:
		if q.Has("kind") {
			k := q.Get("kind")
			if !isKindName(k) {
				return badParam("kind", "must be a resource kind such as Pod")
			}
			s.EventKind = k
		}
		if q.Has("name") {
			n := q.Get("name")
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				return badParam("name", "%s", strings.Join(errs, "; "))
			}
			s.EventName = n
		}
	}
	return nil
}

func isKindName(k string) bool {
	if k == "" || len(k) > 63 {
		return false
	}
	for i, r := range k {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// FieldSelector is the field selector of a stream's watch ("" for none).
func (s Spec) FieldSelector() string {
	switch s.Kind {
	case KindEvents:
		var sels []fields.Selector
		if s.EventKind != "" {
			sels = append(sels, fields.OneTermEqualSelector("involvedObject.kind", s.EventKind))
		}
		if s.EventName != "" {
			sels = append(sels, fields.OneTermEqualSelector("involvedObject.name", s.EventName))
		}
		if len(sels) == 0 {
			return ""
		}
		return fields.AndSelectors(sels...).String()
	case KindWorkflow:
		return fields.OneTermEqualSelector("metadata.name", s.Name).String()
	case KindApplication:
		return fields.OneTermEqualSelector("metadata.name", s.ApplicationName()).String()
	}
	return ""
}

// ApplicationName is the name of the app's Argo CD Application in Argo CD's namespace,
// as the task function names it.
func (s Spec) ApplicationName() string { return s.Namespace + "." + s.App }

// Key identifies the shared topic serving the stream: streams with equal keys share one
// upstream. Options that only select what a subscriber gets from the topic (tailLines,
// sinceTime, follow) are not part of it.
func (s Spec) Key(defaultCluster string) string {
	c := s.Cluster
	if c == "" {
		c = defaultCluster
	}
	return strings.Join([]string{c, string(s.Kind), s.Namespace, s.Name, s.Container, s.Selector, s.FieldSelector()}, "\x00")
}

// Actions are what the stream reads, as the user must be allowed to.
func (s Spec) Actions() []authz.Attributes {
	ns := s.Namespace
	switch s.Kind {
	case KindPods:
		return []authz.Attributes{
			{Namespace: ns, Verb: "list", Resource: "pods"},
			{Namespace: ns, Verb: "watch", Resource: "pods"},
		}
	case KindPodLog:
		return []authz.Attributes{{Namespace: ns, Verb: "get", Resource: "pods", Subresource: "log", Name: s.Name}}
	case KindWorkflows:
		return []authz.Attributes{
			{Namespace: ns, Verb: "list", Group: "argoproj.io", Resource: "workflows"},
			{Namespace: ns, Verb: "watch", Group: "argoproj.io", Resource: "workflows"},
		}
	case KindWorkflow:
		return []authz.Attributes{
			{Namespace: ns, Verb: "get", Group: "argoproj.io", Resource: "workflows", Name: s.Name},
			{Namespace: ns, Verb: "watch", Group: "argoproj.io", Resource: "workflows", Name: s.Name},
		}
	case KindWorkflowLog:
		return []authz.Attributes{
			{Namespace: ns, Verb: "get", Group: "argoproj.io", Resource: "workflows", Name: s.Name},
			{Namespace: ns, Verb: "get", Resource: "pods", Subresource: "log"},
		}
	case KindEvents:
		return []authz.Attributes{
			{Namespace: ns, Verb: "list", Resource: "events"},
			{Namespace: ns, Verb: "watch", Resource: "events"},
		}
	case KindPodMetrics:
		return []authz.Attributes{{Namespace: ns, Verb: "list", Group: "metrics.k8s.io", Resource: "pods"}}
	case KindApps, KindApplication:
		// Users have no rights in Argo CD's namespace: who may see an app's pods may see
		// its summary and its Application, which the router reads with its own identity.
		return []authz.Attributes{{Namespace: ns, Verb: "list", Resource: "pods"}}
	}
	return nil
}

// IsLog says whether the stream resumes by log position rather than resourceVersion.
func (s Spec) IsLog() bool { return s.Kind == KindPodLog || s.Kind == KindWorkflowLog }
