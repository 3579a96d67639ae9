package workflows

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

func clusterTemplate(name string, annotations map[string]string, params ...wfv1.Parameter) *wfv1.ClusterWorkflowTemplate {
	return &wfv1.ClusterWorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec: wfv1.WorkflowSpec{
			Entrypoint: "main",
			Arguments:  wfv1.Arguments{Parameters: params},
			Templates:  []wfv1.Template{{Name: "main"}},
		},
	}
}

func annotated(t *wfv1.WorkflowTemplate, annotations map[string]string) *wfv1.WorkflowTemplate {
	t.Annotations = annotations
	return t
}

// viewerClients are the fake cluster's clients, except that the viewers may not create
// anything (as with Kubernetes' view role).
func viewerClients(fc *fakeCluster, viewers ...string) func(token string) (*Clients, error) {
	return func(token string) (*Clients, error) {
		c, err := fc.clientsFor(token)
		if err != nil || !slices.Contains(viewers, token) {
			return c, err
		}
		c.Kube.(*kubefake.Clientset).PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
			if r.Spec.ResourceAttributes.Verb != "create" {
				return false, nil, nil
			}
			r.Status.Allowed = false
			return true, r, nil
		})
		return c, nil
	}
}

// catalogueCluster: alice may do everything in team (not read cluster templates), carl in
// team and the cluster, vera may read team but not create there, bob nothing.
func catalogueCluster(t testing.TB) *fakeCluster {
	objs := []runtime.Object{
		annotated(template("team", "build",
			wfv1.Parameter{Name: "target", Description: wfv1.AnyStringPtr("What to build.")},
			wfv1.Parameter{Name: "revision", Value: wfv1.AnyStringPtr("main")},
			wfv1.Parameter{Name: "env", Default: wfv1.AnyStringPtr("dev"), Enum: []wfv1.AnyString{"dev", "prod"}},
			wfv1.Parameter{Name: "empty", Value: wfv1.AnyStringPtr("")},
			wfv1.Parameter{Name: "from-config", ValueFrom: &wfv1.ValueFrom{ConfigMapKeyRef: nil, Supplied: &wfv1.SuppliedValueFrom{}}},
		), map[string]string{AnnotationTitle: "Build", AnnotationDescription: "Builds the app."}),
		annotated(template("team", "a-job"), map[string]string{cdrun.AnnotationTemplateKind: "job"}),
		template("team", "zz-last"),
		template("other", "elsewhere"),
		clusterTemplate("dwp-ci", map[string]string{AnnotationDescription: "CI."}, wfv1.Parameter{Name: "repo"}),
		clusterTemplate("dwp-cd-app-service", map[string]string{cdrun.AnnotationTemplateKind: "app-service"}, wfv1.Parameter{Name: "image"}),
	}
	return newFakeCluster(t, map[string][]string{"alice": {"team"}, "carl": {"team", "*"}, "vera": {"team"}}, objs...)
}

func catalogueFamily(fc *fakeCluster, runKey bool) *Family {
	f := newTestFamily(fc, nil)
	f.callers = newCallers(viewerClients(fc, "vera"), time.Minute)
	if runKey {
		f.runKey = cdrun.Key(strings.Repeat("k", cdrun.MinKeyLen))
	}
	return f
}

func runnerNames(items []TaskRunner) []string {
	var out []string
	for _, tr := range items {
		out = append(out, tr.Kind+"/"+tr.Name)
	}
	return out
}

func TestCatalogueList(t *testing.T) {
	fc := catalogueCluster(t)
	const path = "/api/v1/namespaces/team/workflow-templates"
	cases := []struct {
		name, user, query string
		runKey            bool
		want              []string
	}{
		{"cluster templates hidden from who may not list them", "alice", "", true,
			[]string{"WorkflowTemplate/a-job", "WorkflowTemplate/build", "WorkflowTemplate/zz-last"}},
		{"CD Task Runners hidden without a run key", "alice", "", false,
			[]string{"WorkflowTemplate/build", "WorkflowTemplate/zz-last"}},
		{"namespace's first, then the cluster's", "carl", "", true,
			[]string{"WorkflowTemplate/a-job", "WorkflowTemplate/build", "WorkflowTemplate/zz-last", "ClusterWorkflowTemplate/dwp-cd-app-service", "ClusterWorkflowTemplate/dwp-ci"}},
		{"without a run key", "carl", "", false,
			[]string{"WorkflowTemplate/build", "WorkflowTemplate/zz-last", "ClusterWorkflowTemplate/dwp-ci"}},
		{"one kind", "carl", "kind=ClusterWorkflowTemplate", true,
			[]string{"ClusterWorkflowTemplate/dwp-cd-app-service", "ClusterWorkflowTemplate/dwp-ci"}},
		{"the other kind", "carl", "kind=WorkflowTemplate", false,
			[]string{"WorkflowTemplate/build", "WorkflowTemplate/zz-last"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newRouter(catalogueFamily(fc, c.runKey))
			// Every page size gives the same list, page by page.
			for _, limit := range []int{1, 2, 3, 50} {
				q, _ := url.ParseQuery(c.query)
				q.Set("limit", strconv.Itoa(limit))
				var got []string
				for pages := 0; ; pages++ {
					if pages > 10 {
						t.Fatal("no end")
					}
					r := do(t, h, http.MethodGet, path+"?"+q.Encode(), c.user, "")
					if r.code != http.StatusOK {
						t.Fatalf("%d %s", r.code, r.body)
					}
					var l TaskRunnerList
					if err := json.Unmarshal([]byte(r.body), &l); err != nil {
						t.Fatal(err)
					}
					if len(l.Items) > limit {
						t.Fatalf("%d items, limit %d", len(l.Items), limit)
					}
					got = append(got, runnerNames(l.Items)...)
					if l.Metadata.Continue == "" {
						break
					}
					q.Set("continue", l.Metadata.Continue)
				}
				if !slices.Equal(got, c.want) {
					t.Fatalf("limit %d: %v, want %v", limit, got, c.want)
				}
			}
		})
	}
}

// rawGet serves a GET of path with a query as the fuzzer gives it (set after parsing: its
// bytes need not survive a request line).
func rawGet(h http.Handler, path, rawQuery, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.URL.RawQuery = rawQuery
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestCatalogueEntry(t *testing.T) {
	fc := catalogueCluster(t)
	h := newRouter(catalogueFamily(fc, true))
	r := do(t, h, http.MethodGet, "/api/v1/namespaces/team/workflow-templates/build", "alice", "")
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	// The JSON as a portal reads it.
	var got map[string]any
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"kind": "WorkflowTemplate", "name": "build", "namespace": "team", "title": "Build", "description": "Builds the app.",
		"entrypoint": "main",
		"parameters": []any{
			map[string]any{"name": "target", "description": "What to build.", "required": true},
			map[string]any{"name": "revision", "default": "main", "required": false},
			map[string]any{"name": "env", "default": "dev", "enum": []any{"dev", "prod"}, "required": false},
			map[string]any{"name": "empty", "default": "", "required": false},
			map[string]any{"name": "from-config", "required": false},
		},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Fatalf("got  %s\nwant %s", gb, wb)
	}

	r = do(t, h, http.MethodGet, "/api/v1/namespaces/team/workflow-templates/dwp-cd-app-service?kind=ClusterWorkflowTemplate", "carl", "")
	var tr TaskRunner
	if err := json.Unmarshal([]byte(r.body), &tr); err != nil || r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if tr.Kind != KindClusterWorkflowTemplate || tr.Namespace != "" || tr.CDKind != "app-service" || len(tr.Parameters) != 1 || !tr.Parameters[0].Required {
		t.Fatalf("%+v", tr)
	}
}

func TestCatalogueRefusals(t *testing.T) {
	fc := catalogueCluster(t)
	withKey := newRouter(catalogueFamily(fc, true))
	noKey := newRouter(catalogueFamily(fc, false))
	const list = "/api/v1/namespaces/team/workflow-templates"
	otherKind := func() string {
		r := do(t, withKey, http.MethodGet, list+"?limit=1&kind=WorkflowTemplate", "alice", "")
		var l TaskRunnerList
		_ = json.Unmarshal([]byte(r.body), &l)
		if l.Metadata.Continue == "" {
			t.Fatalf("no continue token: %s", r.body)
		}
		return l.Metadata.Continue
	}()
	cases := []struct {
		name        string
		h           http.Handler
		path, user  string
		code        int
		field, text string
	}{
		{"no token", withKey, list, "", 401, "", ""},
		{"no rights", withKey, list, "bob", 403, "", "may not create workflows in namespace team"},
		{"may read but not submit", withKey, list, "vera", 403, "", "may not create workflows"},
		{"another namespace", withKey, "/api/v1/namespaces/other/workflow-templates", "alice", 403, "", ""},
		{"cluster templates asked for by who may not list them", withKey, list + "?kind=ClusterWorkflowTemplate", "alice", 403, "", ""},
		{"bad namespace", withKey, "/api/v1/namespaces/Team/workflow-templates", "alice", 400, "namespace", ""},
		{"bad kind", withKey, list + "?kind=Workflow", "alice", 400, "kind", ""},
		{"kind twice", withKey, list + "?kind=WorkflowTemplate&kind=WorkflowTemplate", "alice", 400, "kind", ""},
		{"bad limit", withKey, list + "?limit=0", "alice", 400, "limit", ""},
		{"limit twice", withKey, list + "?limit=1&limit=2", "alice", 400, "limit", ""},
		{"unknown parameter", withKey, list + "?app=shop", "alice", 400, "app", ""},
		{"bad continue", withKey, list + "?continue=bm9wZQ", "alice", 400, "continue", ""},
		{"empty continue", withKey, list + "?continue=", "alice", 400, "continue", ""},
		{"continue of other filters", withKey, list + "?continue=" + otherKind, "alice", 400, "continue", ""},
		{"get: no rights", withKey, list + "/build", "bob", 403, "", ""},
		{"get: may read but not submit", withKey, list + "/build", "vera", 403, "", ""},
		{"get: unknown", withKey, list + "/absent", "alice", 404, "", "WorkflowTemplate \"absent\" not found in namespace team"},
		{"get: unknown cluster template", withKey, list + "/absent?kind=ClusterWorkflowTemplate", "carl", 404, "", "ClusterWorkflowTemplate \"absent\" not found"},
		{"get: a namespace's template is not the cluster's", withKey, list + "/build?kind=ClusterWorkflowTemplate", "carl", 404, "", ""},
		{"get: cluster template without the right", withKey, list + "/dwp-ci?kind=ClusterWorkflowTemplate", "alice", 403, "", ""},
		{"get: bad name", withKey, list + "/Build_1", "alice", 400, "name", ""},
		{"get: bad kind", withKey, list + "/build?kind=x", "alice", 400, "kind", ""},
		{"get: unknown parameter", withKey, list + "/build?limit=1", "alice", 400, "limit", ""},
		{"get: CD Task Runner without a run key", noKey, list + "/a-job", "alice", 501, "", "run key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, c.h, http.MethodGet, c.path, c.user, "")
			if r.code != c.code {
				t.Fatalf("%d, want %d: %s", r.code, c.code, r.body)
			}
			p := decodeProblem(t, r)
			if c.field != "" && !hasField(p, c.field, "") {
				t.Fatalf("no field error for %s: %+v", c.field, p)
			}
			if !strings.Contains(p.Detail, c.text) {
				t.Fatalf("detail %q lacks %q", p.Detail, c.text)
			}
		})
	}
}

func FuzzCatalogueQuery(f *testing.F) {
	for _, q := range []string{
		"", "kind=WorkflowTemplate", "kind=ClusterWorkflowTemplate&limit=1", "limit=500", "limit=x", "kind=",
		"continue=eyJrIjoiV29ya2Zsb3dUZW1wbGF0ZSIsIm4iOiJidWlsZCIsImYiOiIifQ", "continue=%ff", "kind=a&kind=b", "%zz",
	} {
		f.Add(q, "build")
	}
	fc := catalogueCluster(f)
	h := newRouter(catalogueFamily(fc, true))
	f.Fuzz(func(t *testing.T, rawQuery, name string) {
		for _, path := range []string{"/api/v1/namespaces/team/workflow-templates", "/api/v1/namespaces/team/workflow-templates/" + url.PathEscape(name)} {
			rec := rawGet(h, path, rawQuery, "carl")
			if rec.Code >= 500 {
				t.Fatalf("GET %s?%s: %d %s", path, rawQuery, rec.Code, rec.Body)
			}
			if rec.Code == http.StatusOK && path == "/api/v1/namespaces/team/workflow-templates" {
				var l TaskRunnerList
				if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
					t.Fatal(err)
				}
				if len(l.Items) == 0 && l.Metadata.Continue != "" {
					t.Fatalf("an empty page with a continue token: %s", rec.Body)
				}
			}
		}
	})
}

// FuzzCatalogueCursor: a token is either refused as a 400 or names a place in the
// catalogue, and a token the list made reads back as made.
func FuzzCatalogueCursor(f *testing.F) {
	f.Add(encodeCatalogueCursor(catalogueCursor{Kind: KindWorkflowTemplate, Name: "build", Filter: "f"}), "f")
	f.Add("", "")
	f.Add("e30", "")
	f.Add(`eyJrIjoiQ2x1c3RlcldvcmtmbG93VGVtcGxhdGUiLCJuIjoiIiwiZiI6IiJ9`, "")
	f.Fuzz(func(t *testing.T, token, filter string) {
		c, err := decodeCatalogueCursor(token, filter)
		if err != nil {
			if p, ok := problem.As(err); !ok || p.Status != http.StatusBadRequest {
				t.Fatalf("%q: %v", token, err)
			}
			return
		}
		again, err := decodeCatalogueCursor(encodeCatalogueCursor(c), filter)
		if err != nil || again != c {
			t.Fatalf("%+v → %+v %v", c, again, err)
		}
	})
}
