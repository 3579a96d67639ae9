package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
	"github.com/dwp-sre/dwp-sre/internal/problem"
)

func decodeProblem(t testing.TB, r response) problem.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("content type %q, body %s", ct, r.body)
	}
	var p problem.Problem
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatalf("problem body %q: %v", r.body, err)
	}
	if p.Status != r.code {
		t.Fatalf("problem status %d, response %d", p.Status, r.code)
	}
	return p
}

func hasField(p problem.Problem, field, detailPart string) bool {
	for _, fe := range p.Errors {
		if fe.Field == field && strings.Contains(fe.Detail, detailPart) {
			return true
		}
	}
	return false
}

func TestSubmit(t *testing.T) {
	params := []wfv1.Parameter{
		{Name: "revision", Default: wfv1.AnyStringPtr("main")},
		{Name: "target"}, // required
		{Name: "env", Value: wfv1.AnyStringPtr("dev"), Enum: []wfv1.AnyString{"dev", "prod"}},
	}
	cwft := &wfv1.ClusterWorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "shared"},
		Spec:       wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main"}}},
	}
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}, "root": {"*"}}, template("team", "build", params...), cwft)
	h := newRouter(newTestFamily(fc, nil))
	const path = "/api/v1/namespaces/team/workflows"

	tests := []struct {
		name       string
		path       string
		token      string
		body       string
		wantStatus int
		wantField  string // a field error expected in the problem
		wantDetail string
	}{
		{"no token", path, "", `{"resourceName":"build","app":"shop"}`, 401, "", ""},
		{"not json", path, "alice", `{`, 400, "", ""},
		{"empty body", path, "alice", ``, 400, "", ""},
		{"trailing data", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x"]}} {}`, 400, "", ""},
		{"unknown field", path, "alice", `{"resourceName":"build","app":"shop","colour":"red"}`, 400, "colour", "unknown field"},
		{"wrong type", path, "alice", `{"resourceName":"build","app":["shop"]}`, 400, "app", "string"},
		{"missing app", path, "alice", `{"resourceName":"build"}`, 400, "app", "required"},
		{"invalid namespace", "/api/v1/namespaces/Team_1/workflows", "alice", `{"resourceName":"build","app":"shop"}`, 400, "namespace", ""},
		{"invalid template name", path, "alice", `{"resourceName":"Build!","app":"shop"}`, 400, "resourceName", ""},
		{"invalid kind", path, "alice", `{"resourceKind":"CronWorkflow","resourceName":"build","app":"shop"}`, 400, "resourceKind", ""},
		{"invalid app label", path, "alice", `{"resourceName":"build","app":"shop/front"}`, 400, "app", "label value"},
		{"invalid generateName", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"generateName":"Build_"}}`, 400, "submitOptions.generateName", ""},
		{"name and generateName", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"name":"a","generateName":"b-"}}`, 400, "submitOptions.generateName", "either"},
		{"parameter without =", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target"]}}`, 400, "submitOptions.parameters[0]", "name=value"},
		{"parameter twice", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=a","target=b"]}}`, 400, "submitOptions.parameters[1]", "twice"},
		{"reserved label", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"labels":"app=other"}}`, 400, "submitOptions.labels[0]", "set by the function"},
		{"bad label", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"labels":"ok=1,no"}}`, 400, "submitOptions.labels[1]", "key=value"},
		{"unknown parameter", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x","colour=red"]}}`, 400, "submitOptions.parameters[1]", `unknown parameter "colour": the template declares env, revision, target`},
		{"missing required parameter", path, "alice", `{"resourceName":"build","app":"shop"}`, 400, "submitOptions.parameters", `"target" is required`},
		{"enum violated", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x","env=staging"]}}`, 400, "submitOptions.parameters[1]", "one of dev, prod"},
		{"unknown entrypoint", path, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x"],"entryPoint":"nope"}}`, 400, "submitOptions.entryPoint", "no template"},
		{"missing template", path, "alice", `{"resourceName":"deploy","app":"shop"}`, 404, "", ""},
		{"missing namespace", "/api/v1/namespaces/elsewhere/workflows", "root", `{"resourceName":"build","app":"shop"}`, 404, "", ""},
		{"forbidden", "/api/v1/namespaces/other/workflows", "alice", `{"resourceName":"build","app":"shop"}`, 403, "", ""},
		{"cluster template forbidden", path, "alice", `{"resourceKind":"ClusterWorkflowTemplate","resourceName":"shared","app":"shop"}`, 403, "", ""},
		{"too large", path, "alice", `{"resourceName":"` + strings.Repeat("a", maxSubmitBody) + `"}`, 413, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, h, http.MethodPost, tt.path, tt.token, tt.body)
			if r.code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.code, tt.wantStatus, r.body)
			}
			p := decodeProblem(t, r)
			if tt.wantField != "" && !hasField(p, tt.wantField, tt.wantDetail) {
				t.Fatalf("no field error %s ~ %q in %+v", tt.wantField, tt.wantDetail, p.Errors)
			}
		})
	}

	t.Run("created", func(t *testing.T) {
		body := `{"resourceName":"build","app":"shop","taskType":"ci","submitOptions":{"parameters":["target=x","env=prod"],"labels":"team=a, tier=b","entryPoint":"other","serviceAccount":"runner"}}`
		r := do(t, h, http.MethodPost, path, "alice", body)
		if r.code != http.StatusCreated {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		var got SubmitResponse
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.Name, "build-") || got.Namespace != "team" || got.UID == "" || got.Phase != "Pending" {
			t.Fatalf("answer %+v", got)
		}
		if loc := r.header.Get("Location"); loc != path+"/"+got.Name {
			t.Fatalf("location %q", loc)
		}
		wf, err := fc.argo.ArgoprojV1alpha1().Workflows("team").Get(context.Background(), got.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantLabels := map[string]string{
			"app": "shop", DefaultTaskLabel: "ci", LabelWorkflowTemplate: "build",
			LabelCreator: "user-alice-example.com", "team": "a", "tier": "b",
		}
		for k, v := range wantLabels {
			if wf.Labels[k] != v {
				t.Errorf("label %s = %q, want %q (labels %v)", k, wf.Labels[k], v, wf.Labels)
			}
		}
		if wf.Annotations[AnnotationSubmittedBy] != "user:alice@example.com" {
			t.Errorf("annotations %v", wf.Annotations)
		}
		if ref := wf.Spec.WorkflowTemplateRef; ref == nil || ref.Name != "build" || ref.ClusterScope {
			t.Errorf("template ref %+v", ref)
		}
		if wf.Spec.Entrypoint != "other" || wf.Spec.ServiceAccountName != "runner" {
			t.Errorf("spec %+v", wf.Spec)
		}
		ps := wf.Spec.Arguments.Parameters
		if len(ps) != 2 || ps[0].Name != "target" || ps[0].Value.String() != "x" || ps[1].Value.String() != "prod" {
			t.Errorf("parameters %+v", ps)
		}
	})

	t.Run("from a cluster template with an exact name", func(t *testing.T) {
		body := `{"resourceKind":"ClusterWorkflowTemplate","resourceName":"shared","app":"shop","submitOptions":{"name":"exact-1"}}`
		r := do(t, h, http.MethodPost, path, "root", body)
		if r.code != http.StatusCreated {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		wf, err := fc.argo.ArgoprojV1alpha1().Workflows("team").Get(context.Background(), "exact-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !wf.Spec.WorkflowTemplateRef.ClusterScope || wf.Labels[LabelClusterWorkflowTemplate] != "shared" || wf.Labels[DefaultTaskLabel] != "shared" {
			t.Fatalf("workflow %+v labels %v", wf.Spec.WorkflowTemplateRef, wf.Labels)
		}
		// The same exact name again is a conflict.
		if r := do(t, h, http.MethodPost, path, "root", body); r.code != http.StatusConflict {
			t.Fatalf("second submit: %d %s", r.code, r.body)
		}
	})
}

func TestLabelSafe(t *testing.T) {
	tests := map[string]string{
		"alice":                          "alice",
		"system:serviceaccount:ns:robot": "system-serviceaccount-ns-robot",
		"user@example.com":               "user-example.com",
		"-_weird_-":                      "weird",
		strings.Repeat("a", 70) + "b":    strings.Repeat("a", 62) + "b",
		"日本":                             "",
	}
	for in, want := range tests {
		if got := labelSafe(in); got != want {
			t.Errorf("labelSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func seedHistory(t *testing.T) (*fakeCluster, []string) {
	t.Helper()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var objs []runtime.Object
	var newestFirst []string
	// 12 workflows of app shop (two created in the same second) and 3 of app other.
	for i := range 12 {
		created := base.Add(time.Duration(i) * time.Minute)
		if i == 11 {
			created = base.Add(10 * time.Minute)
		}
		phase := wfv1.WorkflowSucceeded
		if i%3 == 0 {
			phase = wfv1.WorkflowFailed
		}
		objs = append(objs, workflow("team", fmt.Sprintf("shop-%02d", i), created, phase, map[string]string{"app": "shop", LabelWorkflowTemplate: "build"}))
	}
	for i := range 3 {
		objs = append(objs, workflow("team", fmt.Sprintf("other-%d", i), base.Add(time.Hour), wfv1.WorkflowRunning, map[string]string{"app": "other"}))
	}
	// Newest first; same creation time → by name, greatest first (as the summary picks).
	newestFirst = []string{"shop-09", "shop-08", "shop-07", "shop-06", "shop-05", "shop-04", "shop-03", "shop-02", "shop-01", "shop-00"}
	newestFirst = append([]string{"shop-11", "shop-10"}, newestFirst...)
	return newFakeCluster(t, map[string][]string{"alice": {"team"}}, objs...), newestFirst
}

func names(items []wfv1.Workflow) []string {
	out := make([]string, len(items))
	for i, wf := range items {
		out[i] = wf.Name
	}
	return out
}

func TestListHistory(t *testing.T) {
	fc, newestFirst := seedHistory(t)
	h := newRouter(newTestFamily(fc, nil))
	const path = "/api/v1/namespaces/team/workflows"

	list := func(t *testing.T, query string) (WorkflowList, response) {
		t.Helper()
		r := do(t, h, http.MethodGet, path+"?"+query, "alice", "")
		var l WorkflowList
		if r.code == http.StatusOK {
			if err := json.Unmarshal([]byte(r.body), &l); err != nil {
				t.Fatal(err)
			}
		}
		return l, r
	}

	t.Run("pages newest first", func(t *testing.T) {
		var got []string
		q := url.Values{"app": {"shop"}, "limit": {"5"}}
		pages := 0
		for {
			l, r := list(t, q.Encode())
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			pages++
			got = append(got, names(l.Items)...)
			for _, wf := range l.Items {
				if wf.Status.Nodes != nil {
					t.Fatalf("summary of %s has status.nodes", wf.Name)
				}
			}
			if l.Metadata.Continue == "" {
				break
			}
			q.Set("continue", l.Metadata.Continue)
		}
		if pages != 3 || strings.Join(got, ",") != strings.Join(newestFirst, ",") {
			t.Fatalf("%d pages: %v\nwant %v", pages, got, newestFirst)
		}
	})

	t.Run("filters", func(t *testing.T) {
		l, r := list(t, "phase=Failed")
		if r.code != 200 || strings.Join(names(l.Items), ",") != "shop-09,shop-06,shop-03,shop-00" {
			t.Fatalf("%d %v %s", r.code, names(l.Items), r.body)
		}
		l, _ = list(t, "phase=Running&phase=Failed&app=other")
		if len(l.Items) != 3 {
			t.Fatalf("other running: %v", names(l.Items))
		}
		l, _ = list(t, "template=build&phase=Succeeded,Failed&limit=500")
		if len(l.Items) != 12 {
			t.Fatalf("by template: %v", names(l.Items))
		}
		l, _ = list(t, "app=nobody")
		if len(l.Items) != 0 || l.Items == nil {
			t.Fatalf("empty history must be [] not null: %+v", l)
		}
	})

	t.Run("full projection keeps nodes", func(t *testing.T) {
		l, r := list(t, "app=shop&limit=1&projection=full")
		if r.code != 200 || len(l.Items) != 1 || l.Items[0].Status.Nodes == nil {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})

	bad := []struct{ query, field string }{
		{"limit=0", "limit"},
		{"limit=501", "limit"},
		{"limit=x", "limit"},
		{"phase=Done", "phase"},
		{"app=a%2Fb", "app"},
		{"app=", "app"},
		{"app=a&app=b", "app"},
		{"colour=red", "colour"},
		{"projection=nodes", "projection"},
		{"continue=not-a-token", "continue"},
	}
	for _, b := range bad {
		t.Run("bad "+b.query, func(t *testing.T) {
			_, r := list(t, b.query)
			if r.code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			if p := decodeProblem(t, r); !hasField(p, b.field, "") {
				t.Fatalf("no field error for %s: %+v", b.field, p)
			}
		})
	}

	t.Run("continue with other filters", func(t *testing.T) {
		l, _ := list(t, "app=shop&limit=2")
		_, r := list(t, "app=other&limit=2&continue="+url.QueryEscape(l.Metadata.Continue))
		if r.code != http.StatusBadRequest {
			t.Fatalf("status %d", r.code)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		r := do(t, h, http.MethodGet, "/api/v1/namespaces/other/workflows", "alice", "")
		if r.code != http.StatusForbidden {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		decodeProblem(t, r)
	})
}

func TestGet(t *testing.T) {
	fc, _ := seedHistory(t)
	h := newRouter(newTestFamily(fc, nil))
	r := do(t, h, http.MethodGet, "/api/v1/namespaces/team/workflows/shop-01", "alice", "")
	var wf wfv1.Workflow
	if r.code != 200 || json.Unmarshal([]byte(r.body), &wf) != nil || wf.Status.Nodes == nil || wf.Kind != "Workflow" {
		t.Fatalf("full: %d %s", r.code, r.body)
	}
	r = do(t, h, http.MethodGet, "/api/v1/namespaces/team/workflows/shop-01?projection=summary", "alice", "")
	wf = wfv1.Workflow{}
	if r.code != 200 || json.Unmarshal([]byte(r.body), &wf) != nil || wf.Status.Nodes != nil || wf.Name != "shop-01" {
		t.Fatalf("summary: %d %s", r.code, r.body)
	}
	for _, c := range []struct {
		path string
		code int
	}{
		{"/api/v1/namespaces/team/workflows/nope", 404},
		{"/api/v1/namespaces/team/workflows/Bad_Name", 400},
		{"/api/v1/namespaces/team/workflows/shop-01?projection=x", 400},
		{"/api/v1/namespaces/team/workflows/shop-01?other=1", 400},
		{"/api/v1/namespaces/other/workflows/shop-01", 403},
	} {
		if r := do(t, h, http.MethodGet, c.path, "alice", ""); r.code != c.code {
			t.Errorf("%s: %d, want %d: %s", c.path, r.code, c.code, r.body)
		} else {
			decodeProblem(t, r)
		}
	}
}

func TestStopAndTerminate(t *testing.T) {
	running := workflow("team", "run", time.Now(), wfv1.WorkflowRunning, nil)
	running2 := workflow("team", "run2", time.Now(), wfv1.WorkflowRunning, nil)
	done := workflow("team", "done", time.Now(), wfv1.WorkflowSucceeded, nil)
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}}, running, running2, done)
	h := newRouter(newTestFamily(fc, nil))
	put := func(name, op string) response {
		return do(t, h, http.MethodPut, "/api/v1/namespaces/team/workflows/"+name+"/"+op, "alice", "")
	}
	get := func(name string) *wfv1.Workflow {
		wf, err := fc.argo.ArgoprojV1alpha1().Workflows("team").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return wf
	}

	r := put("run", "stop")
	if r.code != http.StatusOK {
		t.Fatalf("stop: %d %s", r.code, r.body)
	}
	wf := get("run")
	if wf.Spec.Shutdown != wfv1.ShutdownStrategyStop || wf.Labels[labelAction] != "Stop" || wf.Labels[labelActor] != "user-alice-example.com" {
		t.Fatalf("after stop: shutdown %q labels %v", wf.Spec.Shutdown, wf.Labels)
	}
	if r := put("run", "stop"); r.code != http.StatusConflict || !strings.Contains(decodeProblem(t, r).Detail, "already shutting down") {
		t.Fatalf("stop twice: %d %s", r.code, r.body)
	}
	if r := put("run", "terminate"); r.code != http.StatusOK || get("run").Spec.Shutdown != wfv1.ShutdownStrategyTerminate {
		t.Fatalf("terminate after stop: %d %s", r.code, r.body)
	}
	if r := put("run", "terminate"); r.code != http.StatusConflict {
		t.Fatalf("terminate twice: %d %s", r.code, r.body)
	}
	if r := put("run2", "terminate"); r.code != http.StatusOK {
		t.Fatalf("terminate: %d %s", r.code, r.body)
	}
	if r := put("run2", "stop"); r.code != http.StatusConflict {
		t.Fatalf("stop after terminate: %d %s", r.code, r.body)
	}
	r = put("done", "stop")
	if p := decodeProblem(t, r); r.code != http.StatusConflict || !strings.Contains(p.Detail, "already finished (Succeeded)") {
		t.Fatalf("stop finished: %d %s", r.code, r.body)
	}
	for _, c := range []struct {
		name, op string
		code     int
	}{{"nope", "stop", 404}, {"Bad!", "stop", 400}} {
		if r := put(c.name, c.op); r.code != c.code {
			t.Errorf("%s %s: %d, want %d", c.op, c.name, r.code, c.code)
		}
	}
	if r := do(t, h, http.MethodPut, "/api/v1/namespaces/other/workflows/run/stop", "alice", ""); r.code != http.StatusForbidden {
		t.Fatalf("forbidden stop: %d %s", r.code, r.body)
	}
}

// fakeArchive records what it is asked.
type fakeArchive struct {
	q      archive.Query
	caller archive.Caller
	page   archive.Page
	wf     *wfv1.Workflow
	err    error
}

func (a *fakeArchive) List(_ context.Context, c archive.Caller, q archive.Query) (archive.Page, error) {
	a.q, a.caller = q, c
	return a.page, a.err
}

func (a *fakeArchive) Get(_ context.Context, c archive.Caller, uid string) (*wfv1.Workflow, error) {
	a.caller = c
	if a.wf == nil || string(a.wf.UID) != uid {
		return nil, problem.NotFound("no archived workflow with uid " + uid)
	}
	return a.wf, a.err
}

func (a *fakeArchive) Close() {}

func TestArchivedRoutes(t *testing.T) {
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}})
	wf := workflow("team", "old", time.Now(), wfv1.WorkflowSucceeded, map[string]string{"app": "shop"})
	arch := &fakeArchive{page: archive.Page{Items: []wfv1.Workflow{*wf}, Continue: "next"}, wf: wf}
	h := newRouter(newTestFamily(fc, arch))

	r := do(t, h, http.MethodGet, "/api/v1/archived-workflows?namespace=team&app=shop&phase=Succeeded&namePrefix=ol&limit=10&continue=abc", "alice", "")
	if r.code != http.StatusOK {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var l WorkflowList
	if err := json.Unmarshal([]byte(r.body), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 1 || l.Items[0].Status.Nodes != nil || l.Metadata.Continue != "next" {
		t.Fatalf("list %s", r.body)
	}
	q := arch.q
	if q.Namespace != "team" || q.Labels["app"] != "shop" || q.Phases[0] != "Succeeded" || q.NamePrefix != "ol" || q.Limit != 10 || q.Continue != "abc" {
		t.Fatalf("query %+v", q)
	}
	if arch.caller.Token != "alice" {
		t.Fatalf("caller token %q", arch.caller.Token)
	}
	// The caller's rights are checked through SelfSubjectAccessReviews.
	if ok, err := arch.caller.Can(context.Background(), "list", "team"); !ok || err != nil {
		t.Fatalf("can list team: %v %v", ok, err)
	}
	if ok, _ := arch.caller.Can(context.Background(), "list", "other"); ok {
		t.Fatal("alice may list other")
	}

	for _, c := range []struct {
		query, field string
	}{
		{"", "namespace"},
		{"namespace=Bad_NS", "namespace"},
		{"namespace=a&namespace=b", "namespace"},
		{"namespace=team&namePrefix=A*", "namePrefix"},
		{"namespace=team&limit=-1", "limit"},
		{"namespace=team&uid=1", "uid"},
		{"namespace=team&projection=full", "projection"},
	} {
		r := do(t, h, http.MethodGet, "/api/v1/archived-workflows?"+c.query, "alice", "")
		if r.code != http.StatusBadRequest || !hasField(decodeProblem(t, r), c.field, "") {
			t.Errorf("%q: %d %s", c.query, r.code, r.body)
		}
	}

	r = do(t, h, http.MethodGet, "/api/v1/archived-workflows/"+string(wf.UID), "alice", "")
	var got wfv1.Workflow
	if r.code != 200 || json.Unmarshal([]byte(r.body), &got) != nil || got.Status.Nodes == nil {
		t.Fatalf("get: %d %s", r.code, r.body)
	}
	if r := do(t, h, http.MethodGet, "/api/v1/archived-workflows/unknown", "alice", ""); r.code != 404 {
		t.Fatalf("unknown uid: %d", r.code)
	}
	if r := do(t, h, http.MethodGet, "/api/v1/archived-workflows/bad%20uid", "alice", ""); r.code != 400 {
		t.Fatalf("bad uid: %d", r.code)
	}

	unconfigured := newRouter(newTestFamily(fc, nil))
	if r := do(t, unconfigured, http.MethodGet, "/api/v1/archived-workflows?namespace=team", "alice", ""); r.code != http.StatusNotImplemented {
		t.Fatalf("no archive: %d %s", r.code, r.body)
	}
}

func TestUnauthorized(t *testing.T) {
	fc := newFakeCluster(t, nil)
	h := newRouter(newTestFamily(fc, nil))
	for _, hdr := range []string{"", "Basic abc", "Bearer", "Bearer  ", "Bearer a b", "Bearer \x01"} {
		req := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/team/workflows", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("Authorization %q: %d", hdr, rec.Code)
		}
	}
}

// A submit's body must say it is JSON: a form or text body is refused with 415.
func TestSubmitNeedsJSON(t *testing.T) {
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}}, template("team", "build"))
	h := newRouter(newTestFamily(fc, nil))
	body := `{"resourceName":"build","app":"shop"}`
	for _, tt := range []struct {
		contentType string
		want        int
	}{
		{"", http.StatusUnsupportedMediaType},
		{"text/plain", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"multipart/form-data; boundary=x", http.StatusUnsupportedMediaType},
		{"application/json; charset=utf-8", http.StatusCreated},
		{"application/merge-patch+json", http.StatusCreated},
	} {
		req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/api/v1/namespaces/team/workflows", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer alice")
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("Content-Type %q: %d, want %d: %s", tt.contentType, rec.Code, tt.want, rec.Body)
		}
		if tt.want == http.StatusUnsupportedMediaType && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/problem+json") {
			t.Errorf("Content-Type %q: answered %s, not a problem", tt.contentType, rec.Header().Get("Content-Type"))
		}
	}
}
