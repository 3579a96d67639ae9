package api

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func mustQuery(t testing.TB, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name, path, query string
		want              Spec
		wantField         string // "" means success
		notFound          bool
	}{
		{name: "pods", path: "namespaces/shop/pods",
			want: Spec{Kind: KindPods, Namespace: "shop", Follow: true}},
		{name: "pods of an app on a cluster", path: "/api/v1/stream/clusters/east/namespaces/shop/pods", query: "app=web",
			want: Spec{Kind: KindPods, Cluster: "east", Namespace: "shop", App: "web", Selector: "app=web", Follow: true}},
		{name: "app and selector combine", path: "namespaces/shop/pods", query: "app=web&labelSelector=tier%3Dfront",
			want: Spec{Kind: KindPods, Namespace: "shop", App: "web", Selector: "app=web,tier=front", Follow: true}},
		{name: "encoded cluster name", path: "clusters/arn:aws:eks:eu-west-1:1:cluster%2Fprod/namespaces/shop/pods",
			want: Spec{Kind: KindPods, Cluster: "arn:aws:eks:eu-west-1:1:cluster/prod", Namespace: "shop", Follow: true}},
		{name: "pod log", path: "namespaces/shop/pods/web-1/log", query: "container=web&tailLines=10&follow=false",
			want: Spec{Kind: KindPodLog, Namespace: "shop", Name: "web-1", Container: "web", TailLines: ptr(int64(10)), Follow: false}},
		{name: "pod log since", path: "namespaces/shop/pods/web-1/log", query: "sinceTime=2026-01-02T03:04:05.5Z",
			want: Spec{Kind: KindPodLog, Namespace: "shop", Name: "web-1", SinceTime: ptr(time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.UTC)), Follow: true}},
		{name: "workflows", path: "namespaces/ci/workflows", query: "app=web",
			want: Spec{Kind: KindWorkflows, Namespace: "ci", App: "web", Selector: "app=web", Follow: true}},
		{name: "workflow", path: "namespaces/ci/workflows/build-x7", want: Spec{Kind: KindWorkflow, Namespace: "ci", Name: "build-x7", Follow: true}},
		{name: "workflow log defaults to main", path: "namespaces/ci/workflows/build-x7/log",
			want: Spec{Kind: KindWorkflowLog, Namespace: "ci", Name: "build-x7", Container: "main", Follow: true}},
		{name: "events of an object", path: "namespaces/shop/events", query: "kind=Pod&name=web-1",
			want: Spec{Kind: KindEvents, Namespace: "shop", EventKind: "Pod", EventName: "web-1", Follow: true}},
		{name: "metrics", path: "namespaces/shop/metrics/pods", query: "app=web",
			want: Spec{Kind: KindPodMetrics, Namespace: "shop", App: "web", Selector: "app=web", Follow: true}},
		{name: "apps", path: "namespaces/shop/apps", want: Spec{Kind: KindApps, Namespace: "shop", Follow: true}},
		{name: "application", path: "clusters/east/namespaces/shop/apps/web/application", want: Spec{
			Kind: KindApplication, Cluster: "east", Namespace: "shop", App: "web", Follow: true,
			Selector: "dwp.io/app=web,dwp.io/app-namespace=shop",
		}},
		{name: "polyfill lastEventId", path: "namespaces/shop/apps", query: "lastEventId=7",
			want: Spec{Kind: KindApps, Namespace: "shop", Follow: true, LastEventID: "7"}},

		{name: "unknown stream", path: "namespaces/shop/secrets", notFound: true, wantField: "path"},
		{name: "no namespace", path: "pods", notFound: true, wantField: "path"},
		{name: "empty segment", path: "namespaces//pods", notFound: true, wantField: "path"},
		{name: "bad namespace", path: "namespaces/Shop_1/pods", wantField: "namespace"},
		{name: "bad pod name", path: "namespaces/shop/pods/Web..1/log", wantField: "name"},
		{name: "unknown parameter", path: "namespaces/shop/pods", query: "token=secret", wantField: "token"},
		{name: "parameter twice", path: "namespaces/shop/pods", query: "app=a&app=b", wantField: "app"},
		{name: "empty app", path: "namespaces/shop/pods", query: "app=", wantField: "app"},
		{name: "bad app", path: "namespaces/shop/pods", query: "app=a%20b", wantField: "app"},
		{name: "bad selector", path: "namespaces/shop/pods", query: "labelSelector=%3D%3D%3D", wantField: "labelSelector"},
		{name: "negative tail", path: "namespaces/shop/pods/p/log", query: "tailLines=-1", wantField: "tailLines"},
		{name: "huge tail", path: "namespaces/shop/pods/p/log", query: "tailLines=1000001", wantField: "tailLines"},
		{name: "tail and since", path: "namespaces/shop/pods/p/log", query: "tailLines=1&sinceTime=2026-01-02T03:04:05Z", wantField: "tailLines"},
		{name: "bad since", path: "namespaces/shop/pods/p/log", query: "sinceTime=yesterday", wantField: "sinceTime"},
		{name: "bad follow", path: "namespaces/shop/pods/p/log", query: "follow=maybe", wantField: "follow"},
		{name: "bad container", path: "namespaces/shop/pods/p/log", query: "container=A_B", wantField: "container"},
		{name: "bad event kind", path: "namespaces/shop/events", query: "kind=1Pod", wantField: "kind"},
		{name: "parameter on a stream without any", path: "namespaces/shop/apps", query: "app=x", wantField: "app"},
		// The Application is "<namespace>.<app>": an app holding a dot could name another's.
		{name: "app with a dot", path: "namespaces/shop/apps/web.x/application", wantField: "app"},
		{name: "app not a label", path: "namespaces/shop/apps/Web/application", wantField: "app"},
		{name: "application with a parameter", path: "namespaces/shop/apps/web/application", query: "labelSelector=x", wantField: "labelSelector"},
		{name: "application of no app", path: "namespaces/shop/apps/application", notFound: true, wantField: "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec(tt.path, mustQuery(t, tt.query), "app")
			if tt.wantField != "" {
				var se *SpecError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a SpecError on %s", err, tt.wantField)
				}
				if se.Field != tt.wantField || se.NotFound != tt.notFound {
					t.Fatalf("error on %q (not found %v): %v; want %q (%v)", se.Field, se.NotFound, se, tt.wantField, tt.notFound)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !specEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func specEqual(a, b Spec) bool {
	eqp := func(x, y *int64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	eqt := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	if !eqp(a.TailLines, b.TailLines) || !eqt(a.SinceTime, b.SinceTime) {
		return false
	}
	a.TailLines, b.TailLines, a.SinceTime, b.SinceTime = nil, nil, nil, nil
	return a == b
}

func TestKeySharesWhatCanBeShared(t *testing.T) {
	parse := func(path, q string) Spec {
		s, err := ParseSpec(path, mustQuery(t, q), "app")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	same := [][2]Spec{
		{parse("namespaces/a/pods/p/log", "tailLines=5"), parse("namespaces/a/pods/p/log", "sinceTime=2026-01-01T00:00:00Z")},
		{parse("namespaces/a/pods", "labelSelector=x%3D1,app%3Dweb"), parse("namespaces/a/pods", "app=web&labelSelector=x%3D1")},
		{parse("namespaces/a/pods", ""), parse("clusters/local/namespaces/a/pods", "")},
		{parse("namespaces/a/apps/web/application", ""), parse("clusters/local/namespaces/a/apps/web/application", "")},
	}
	for i, p := range same {
		if p[0].Key("local") != p[1].Key("local") {
			t.Errorf("pair %d: keys differ: %q vs %q", i, p[0].Key("local"), p[1].Key("local"))
		}
	}
	different := [][2]Spec{
		{parse("namespaces/a/pods/p/log", "container=x"), parse("namespaces/a/pods/p/log", "container=y")},
		{parse("namespaces/a/pods", ""), parse("namespaces/b/pods", "")},
		{parse("namespaces/a/pods", ""), parse("clusters/east/namespaces/a/pods", "")},
		{parse("namespaces/a/events", "name=x"), parse("namespaces/a/events", "name=y")},
		{parse("namespaces/a/workflows/x", ""), parse("namespaces/a/workflows/x/log", "")},
		{parse("namespaces/a/apps/web/application", ""), parse("namespaces/a/apps/db/application", "")},
		{parse("namespaces/a/apps/web/application", ""), parse("namespaces/b/apps/web/application", "")},
	}
	for i, p := range different {
		if p[0].Key("local") == p[1].Key("local") {
			t.Errorf("pair %d: keys equal: %q", i, p[0].Key("local"))
		}
	}
}

func TestActions(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"namespaces/a/pods", []string{`list pods in namespace "a"`, `watch pods in namespace "a"`}},
		{"namespaces/a/pods/p/log", []string{`get pods/log "p" in namespace "a"`}},
		{"namespaces/a/workflows", []string{`list workflows.argoproj.io in namespace "a"`, `watch workflows.argoproj.io in namespace "a"`}},
		{"namespaces/a/workflows/w", []string{`get workflows.argoproj.io "w" in namespace "a"`, `watch workflows.argoproj.io "w" in namespace "a"`}},
		{"namespaces/a/workflows/w/log", []string{`get workflows.argoproj.io "w" in namespace "a"`, `get pods/log in namespace "a"`}},
		{"namespaces/a/events", []string{`list events in namespace "a"`, `watch events in namespace "a"`}},
		{"namespaces/a/metrics/pods", []string{`list pods.metrics.k8s.io in namespace "a"`}},
		{"namespaces/a/apps", []string{`list pods in namespace "a"`}},
		{"namespaces/a/apps/web/application", []string{`list pods in namespace "a"`}},
	}
	for _, tt := range tests {
		s, err := ParseSpec(tt.path, nil, "app")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, a := range s.Actions() {
			got = append(got, a.String())
		}
		if strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
			t.Errorf("%s: %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestFieldSelector(t *testing.T) {
	s, _ := ParseSpec("namespaces/a/events", mustQuery(t, "kind=Pod&name=web-1"), "app")
	if got := s.FieldSelector(); got != "involvedObject.kind=Pod,involvedObject.name=web-1" {
		t.Fatalf("events selector = %q", got)
	}
	s, _ = ParseSpec("namespaces/a/workflows/w1", nil, "app")
	if got := s.FieldSelector(); got != "metadata.name=w1" {
		t.Fatalf("workflow selector = %q", got)
	}
	s, _ = ParseSpec("namespaces/shop/apps/web/application", nil, "app")
	if got := s.FieldSelector(); got != "metadata.name=shop.web" {
		t.Fatalf("application selector = %q", got)
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add("namespaces/shop/pods", "app=web")
	f.Add("clusters/x/namespaces/shop/pods/p/log", "tailLines=3&container=c&follow=0")
	f.Add("namespaces/a/events", "kind=Pod&name=x")
	f.Add("/api/v1/stream/namespaces/a/metrics/pods", "labelSelector=a+in+(b,c)")
	f.Add("namespaces/%zz/pods", "")
	f.Add("namespaces/a/pods/p/log", "sinceTime=2026-01-02T03:04:05Z")
	f.Add("clusters/c/namespaces/a/apps/web/application", "lastEventId=12")
	f.Fuzz(func(t *testing.T, path, query string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		s, err := ParseSpec(path, q, "app")
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error of another type: %v", err)
			}
			return
		}
		if s.Namespace == "" || s.Kind == "" || len(s.Actions()) == 0 {
			t.Fatalf("incomplete spec %+v", s)
		}
		if s.TailLines != nil && (*s.TailLines < 0 || *s.TailLines > MaxTailLines) {
			t.Fatalf("tailLines %d accepted", *s.TailLines)
		}
		if strings.ContainsAny(s.Namespace+s.Name+s.Container, "/\x00") {
			t.Fatalf("unsafe names %+v", s)
		}
		if s.Kind == KindApplication && strings.Count(s.ApplicationName(), ".") != 1 {
			t.Fatalf("application %q names more than one app", s.ApplicationName())
		}
		_ = s.Key("default")
	})
}

func TestParseResume(t *testing.T) {
	tests := []struct {
		kind    Kind
		id      string
		wantErr bool
		check   func(Resume) bool
	}{
		{KindPods, "", false, func(r Resume) bool { return !r.Set }},
		{KindPods, "12345", false, func(r Resume) bool { return r.HasRV && r.RV == 12345 }},
		{KindPods, "opaque-v1", false, func(r Resume) bool { return r.Set && !r.HasRV }},
		{KindPods, "a\nb", true, nil},
		{KindPods, strings.Repeat("9", 200), true, nil},
		{KindPodLog, "1700000000000000000", false, func(r Resume) bool { return r.Log == LogPos{Nanos: 1700000000000000000} }},
		{KindPodLog, "1700000000000000000.3", false, func(r Resume) bool { return r.Log == LogPos{Nanos: 1700000000000000000, Rank: 3} }},
		{KindPodLog, "end", false, func(r Resume) bool { return r.Ended }},
		{KindPodLog, "17.0", true, nil},
		{KindPodLog, "-5", true, nil},
		{KindPodLog, "+5", true, nil},
		{KindPodLog, "5.", true, nil},
		{KindWorkflowLog, "abc", true, nil},
	}
	for _, tt := range tests {
		r, err := ParseResume(tt.kind, tt.id)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s %q: err = %v", tt.kind, tt.id, err)
			continue
		}
		if err == nil && !tt.check(r) {
			t.Errorf("%s %q: got %+v", tt.kind, tt.id, r)
		}
	}
}

func FuzzParseResume(f *testing.F) {
	f.Add("1700000000000000000.2")
	f.Add("end")
	f.Add("123")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		for _, k := range []Kind{KindPods, KindPodLog, KindWorkflowLog, KindPodMetrics, KindApps, KindApplication} {
			r, err := ParseResume(k, id)
			if err != nil {
				continue
			}
			if (k == KindPodLog || k == KindWorkflowLog) && r.Set && !r.Ended {
				// A log position prints back as itself.
				if r.Log.String() != id {
					t.Fatalf("%q parsed as %v", id, r.Log)
				}
			}
		}
	})
}
