package workflows

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
)

// The fuzz targets drive the real handlers on the fake cluster: whatever the input, the
// answer is never a 5xx (and a panic fails the target).

func fuzzFamily(t testing.TB) http.Handler {
	params := []wfv1.Parameter{{Name: "target"}, {Name: "env", Value: wfv1.AnyStringPtr("dev"), Enum: []wfv1.AnyString{"dev", "prod"}}}
	objs := []runtime.Object{
		template("team", "build", params...),
		workflow("team", "run-1", time.Unix(1e9, 0), wfv1.WorkflowRunning, map[string]string{"app": "shop"}),
		workflow("team", "done-1", time.Unix(1e9+1, 0), wfv1.WorkflowSucceeded, map[string]string{"app": "shop"}),
	}
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}}, objs...)
	return newRouter(newTestFamily(fc, &fakeArchive{}))
}

func FuzzSubmit(f *testing.F) {
	seeds := []struct{ ns, body string }{
		{"team", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x"]}}`},
		{"team", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["target=x","env=prod"],"labels":"a=b,c=d","entryPoint":"main","generateName":"b-","serviceAccount":"sa"}}`},
		{"team", `{"resourceKind":"ClusterWorkflowTemplate","resourceName":"x","app":"a"}`},
		{"team", `{"resourceName":"build","app":"shop","submitOptions":{"name":"n","generateName":"g"}}`},
		{"team", `{"resourceName":1}`},
		{"team", `[]`},
		{"team", `null`},
		{"Team", `{}`},
		{"team", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["=","a==b","\u0000=1"],"labels":",,="}}`},
		{"team", "{\"resourceName\":\"build\",\"app\":\"shop\"}\n{\"x\":1}"},
	}
	for _, s := range seeds {
		f.Add(s.ns, s.body)
	}
	h := fuzzFamily(f)
	f.Fuzz(func(t *testing.T, ns, body string) {
		target := "/api/v1/namespaces/" + url.PathEscape(ns) + "/workflows"
		r := do(t, h, http.MethodPost, target, "alice", body)
		if r.code >= 500 {
			t.Fatalf("POST %s %q: %d %s", target, body, r.code, r.body)
		}
	})
}

func FuzzListQuery(f *testing.F) {
	for _, q := range []string{
		"", "app=shop", "app=shop&phase=Running,Failed&limit=2", "phase=Nope", "limit=-1", "limit=99999999999999999999",
		"continue=eyJ0IjoiMjAwMS0wOS0wOVQwMTo0NjozOVoiLCJuIjoicnVuLTEifQ", "continue=%ff%fe", "projection=full",
		"template=build&clusterTemplate=x&taskType=y", "app=a&app=b", "%zz", "a;b=c",
	} {
		f.Add(q)
	}
	h := fuzzFamily(f)
	f.Fuzz(func(t *testing.T, rawQuery string) {
		for _, path := range []string{"/api/v1/namespaces/team/workflows", "/api/v1/archived-workflows", "/api/v1/namespaces/team/workflows/run-1"} {
			// Set the query after parsing: the fuzzer's bytes need not survive a request line.
			req := httptest.NewRequest(http.MethodGet, path, nil)
			req.URL.RawQuery = rawQuery
			req.Header.Set("Authorization", "Bearer alice")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("GET %s?%s: %d %s", path, rawQuery, rec.Code, rec.Body)
			}
		}
	})
}

func FuzzPathNames(f *testing.F) {
	for _, s := range []string{"run-1", "done-1", "Bad", "", "a/b", "..", "x\x00"} {
		f.Add(s)
	}
	h := fuzzFamily(f)
	f.Fuzz(func(t *testing.T, name string) {
		esc := url.PathEscape(name)
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/api/v1/namespaces/team/workflows/" + esc},
			{http.MethodPut, "/api/v1/namespaces/team/workflows/" + esc + "/stop"},
			{http.MethodPut, "/api/v1/namespaces/" + esc + "/workflows/run-1/terminate"},
			{http.MethodGet, "/api/v1/archived-workflows/" + esc},
		} {
			r := do(t, h, c.method, c.path, "alice", "")
			if r.code >= 500 {
				t.Fatalf("%s %s: %d %s", c.method, c.path, r.code, r.body)
			}
		}
	})
}

func FuzzFinishedEvent(f *testing.F) {
	for _, d := range []string{
		`{"namespace":"team","name":"run-1","uid":"uid-run-1","phase":"Succeeded"}`,
		`{"namespace":"team","name":"gone","uid":"u","phase":"Failed"}`,
		`{"namespace":"team","name":"run-1","uid":"u","phase":"Running"}`,
		`{}`, `[]`, `"x"`, `{"namespace":1}`, ``,
	} {
		f.Add(d, "application/json")
	}
	f.Add(`<x/>`, "application/xml")
	fc := newFakeCluster(f, nil, workflow("team", "run-1", time.Unix(1e9, 0), wfv1.WorkflowRunning, nil))
	fam := newTestFamily(fc, nil)
	f.Fuzz(func(t *testing.T, data, contentType string) {
		e := event.New()
		e.SetID("1")
		e.SetType(EventWorkflowFinished)
		e.SetSource("/fuzz")
		e.SetDataContentType(contentType)
		e.DataEncoded = []byte(data)
		reply, err := fam.onFinished(context.Background(), e)
		switch {
		case err != nil && !eventrouter.IsInvalid(err):
			t.Fatalf("%q: an error that is not the event's fault: %v", data, err)
		case err == nil && (reply == nil || reply.Validate() != nil):
			t.Fatalf("%q: no valid reply", data)
		}
	})
}
