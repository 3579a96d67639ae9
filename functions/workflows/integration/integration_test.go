// Package integration_test runs the task function's workflow operations against the
// local control plane: a real API server with RBAC, Argo's real workflow-controller
// (pods completed by kwok) and its Postgres archive.
package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/functions/workflows"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

// fixture is a namespace with two WorkflowTemplates, alice allowed to edit in it, and
// the function started against the control plane.
type fixture struct {
	env   *clustertest.Env
	ns    string
	url   string
	admin wfclient.Interface
	// sender is the bearer token of the function's one allowed event sender.
	sender string
}

func setup(t *testing.T, extraConfig ...map[string]string) *fixture {
	t.Helper()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	admin, err := wfclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	step := func(annotations map[string]string) wfv1.Template {
		return wfv1.Template{
			Name:      "main",
			Metadata:  wfv1.Metadata{Annotations: annotations},
			Container: &corev1.Container{Image: "busybox", Command: []string{"true"}},
		}
	}
	templates := []*wfv1.WorkflowTemplate{
		{
			// Deleted by the controller soon after it ends, once archived.
			ObjectMeta: metav1.ObjectMeta{Name: "build"},
			Spec: wfv1.WorkflowSpec{
				Entrypoint:  "main",
				Arguments:   wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "revision", Value: wfv1.AnyStringPtr("main")}}},
				Templates:   []wfv1.Template{step(nil)},
				TTLStrategy: &wfv1.TTLStrategy{SecondsAfterCompletion: ptr(int32(3))},
			},
		},
		{
			// Its pod keeps running (kwok completes only pods without this annotation).
			ObjectMeta: metav1.ObjectMeta{Name: "long"},
			Spec: wfv1.WorkflowSpec{
				Entrypoint: "main",
				Templates:  []wfv1.Template{step(map[string]string{"dwp.io/keep-running": "true"})},
			},
		},
	}
	for _, tmpl := range templates {
		if _, err := admin.ArgoprojV1alpha1().WorkflowTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The built-in edit role covers Argo's resources through the aggregated roles Argo installs.
	env.Grant(t, ns, "alice", "edit")

	tokenFile, identity := env.SenderToken(t, ns, "sender", "dwp-function-test")
	sender, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	f := function.New()
	cfg := map[string]string{
		eventauth.EnvAudience: "dwp-function-test", eventauth.EnvSenders: identity,
		workflows.EnvKubeconfig:         env.Kubeconfig,
		workflows.EnvArchiveDSN:         env.ArchiveDSN,
		workflows.EnvArchiveClusterName: env.ClusterName,
	}
	for _, extra := range extraConfig {
		for k, v := range extra {
			cfg[k] = v
		}
	}
	err = f.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(f.Handle))
	t.Cleanup(func() {
		srv.Close()
		_ = f.Stop(context.Background())
	})
	return &fixture{env: env, ns: ns, url: srv.URL, admin: admin, sender: string(sender)}
}

func ptr[T any](v T) *T { return &v }

type answer struct {
	code int
	body []byte
	hdr  http.Header
}

func (fx *fixture) call(t *testing.T, method, path, user, body string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fx.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch user {
	case "":
	case "bogus":
		req.Header.Set("Authorization", "Bearer not-a-token")
	default:
		req.Header.Set("Authorization", "Bearer "+fx.env.Token(t, user))
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, body: b, hdr: resp.Header}
}

func (a answer) problem(t *testing.T) problem.Problem {
	t.Helper()
	if ct := a.hdr.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("%d with content type %q: %s", a.code, ct, a.body)
	}
	var p problem.Problem
	if err := json.Unmarshal(a.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (fx *fixture) submit(t *testing.T, user, body string) workflows.SubmitResponse {
	t.Helper()
	a := fx.call(t, http.MethodPost, "/api/v1/namespaces/"+fx.ns+"/workflows", user, body)
	if a.code != http.StatusCreated {
		t.Fatalf("submit: %d %s", a.code, a.body)
	}
	var r workflows.SubmitResponse
	if err := json.Unmarshal(a.body, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func waitUntil(t *testing.T, timeout time.Duration, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %s)", what, timeout, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (fx *fixture) getWorkflow(t *testing.T, user, name string) (wfv1.Workflow, int) {
	t.Helper()
	a := fx.call(t, http.MethodGet, "/api/v1/namespaces/"+fx.ns+"/workflows/"+name, user, "")
	var wf wfv1.Workflow
	if a.code == http.StatusOK {
		if err := json.Unmarshal(a.body, &wf); err != nil {
			t.Fatal(err)
		}
	}
	return wf, a.code
}

func (fx *fixture) list(t *testing.T, user, path string) workflows.WorkflowList {
	t.Helper()
	a := fx.call(t, http.MethodGet, path, user, "")
	if a.code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, a.code, a.body)
	}
	var l workflows.WorkflowList
	if err := json.Unmarshal(a.body, &l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSubmitRunsAndIsArchived(t *testing.T) {
	fx := setup(t)
	start := time.Now()
	sub := fx.submit(t, "alice", `{"resourceName":"build","app":"shop","taskType":"ci","submitOptions":{"parameters":["revision=abc123"]}}`)
	if sub.Phase != "Pending" || !strings.HasPrefix(sub.Name, "build-") {
		t.Fatalf("submitted %+v", sub)
	}

	// The real controller runs it to the end.
	var wf wfv1.Workflow
	waitUntil(t, 90*time.Second, "workflow Succeeded", func() (bool, string) {
		var code int
		wf, code = fx.getWorkflow(t, "alice", sub.Name)
		if wf.Status.Phase.Completed() && wf.Status.Phase != wfv1.WorkflowSucceeded {
			t.Fatalf("workflow ended %s: %s", wf.Status.Phase, wf.Status.Message)
		}
		return wf.Status.Phase == wfv1.WorkflowSucceeded, fmt.Sprintf("%d %s", code, wf.Status.Phase)
	})
	t.Logf("submitted → Succeeded in %s", time.Since(start).Round(100*time.Millisecond))
	if wf.Labels["app"] != "shop" || wf.Labels["dwp.io/task"] != "ci" || wf.Labels[workflows.LabelCreator] != "alice" || wf.Annotations[workflows.AnnotationSubmittedBy] != "alice" {
		t.Fatalf("labels %v annotations %v", wf.Labels, wf.Annotations)
	}
	if p := wf.Spec.Arguments.Parameters; len(p) != 1 || p[0].Value.String() != "abc123" {
		t.Fatalf("parameters %+v", p)
	}

	// It is in the app's history, as a summary.
	hist := fx.list(t, "alice", "/api/v1/namespaces/"+fx.ns+"/workflows?app=shop&phase=Succeeded")
	if len(hist.Items) != 1 || hist.Items[0].Name != sub.Name || hist.Items[0].Status.Nodes != nil {
		t.Fatalf("history %+v", hist)
	}
	if other := fx.list(t, "alice", "/api/v1/namespaces/"+fx.ns+"/workflows?app=web"); len(other.Items) != 0 {
		t.Fatalf("app web has %d workflows", len(other.Items))
	}

	// Archived by the controller, then deleted from the cluster (ttlStrategy), and then
	// only in the archive.
	archivedPath := "/api/v1/archived-workflows?namespace=" + fx.ns + "&app=shop"
	waitUntil(t, 60*time.Second, "archived and deleted from the cluster", func() (bool, string) {
		_, code := fx.getWorkflow(t, "alice", sub.Name)
		l := fx.list(t, "alice", archivedPath)
		return code == http.StatusNotFound && len(l.Items) == 1, fmt.Sprintf("get %d, %d archived", code, len(l.Items))
	})
	arch := fx.list(t, "alice", archivedPath)
	got := arch.Items[0]
	if got.Name != sub.Name || string(got.UID) != sub.UID || got.Status.Phase != wfv1.WorkflowSucceeded || got.Status.Nodes != nil || got.Labels["dwp.io/task"] != "ci" {
		t.Fatalf("archived summary %+v", got)
	}
	if l := fx.list(t, "alice", "/api/v1/namespaces/"+fx.ns+"/workflows?app=shop"); len(l.Items) != 0 {
		t.Fatalf("still in the live history: %+v", l.Items)
	}
	a := fx.call(t, http.MethodGet, "/api/v1/archived-workflows/"+sub.UID, "alice", "")
	var full wfv1.Workflow
	if a.code != http.StatusOK || json.Unmarshal(a.body, &full) != nil || len(full.Status.Nodes) == 0 {
		t.Fatalf("archived workflow: %d %.300s", a.code, a.body)
	}
	t.Logf("archived and deleted %s after submission", time.Since(start).Round(100*time.Millisecond))

	// Rights on the archive are the caller's rights on the namespace.
	if a := fx.call(t, http.MethodGet, archivedPath, "bob", ""); a.code != http.StatusForbidden {
		t.Fatalf("bob lists the archive: %d %s", a.code, a.body)
	}
	if a := fx.call(t, http.MethodGet, "/api/v1/archived-workflows/"+sub.UID, "bob", ""); a.code != http.StatusForbidden {
		t.Fatalf("bob gets an archived workflow: %d %s", a.code, a.body)
	}
}

func TestStopRunningWorkflow(t *testing.T) {
	fx := setup(t)
	sub := fx.submit(t, "alice", `{"resourceName":"long","app":"shop"}`)
	cs := fx.env.AdminClientset(t)
	waitUntil(t, 60*time.Second, "workflow Running with its pod Running", func() (bool, string) {
		wf, _ := fx.getWorkflow(t, "alice", sub.Name)
		pods, err := cs.CoreV1().Pods(fx.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + sub.Name})
		if err != nil || len(pods.Items) == 0 {
			return false, fmt.Sprintf("phase %s, no pod (%v)", wf.Status.Phase, err)
		}
		return wf.Status.Phase == wfv1.WorkflowRunning && pods.Items[0].Status.Phase == corev1.PodRunning,
			fmt.Sprintf("phase %s, pod %s", wf.Status.Phase, pods.Items[0].Status.Phase)
	})

	path := "/api/v1/namespaces/" + fx.ns + "/workflows/" + sub.Name + "/stop"
	a := fx.call(t, http.MethodPut, path, "alice", "")
	if a.code != http.StatusOK {
		t.Fatalf("stop: %d %s", a.code, a.body)
	}
	start := time.Now()
	var wf wfv1.Workflow
	waitUntil(t, 90*time.Second, "stopped workflow ends", func() (bool, string) {
		wf, _ = fx.getWorkflow(t, "alice", sub.Name)
		return wf.Status.Phase.Completed(), fmt.Sprintf("phase %s: %s", wf.Status.Phase, wf.Status.Message)
	})
	t.Logf("stop → %s in %s: %q", wf.Status.Phase, time.Since(start).Round(100*time.Millisecond), wf.Status.Message)
	if wf.Spec.Shutdown != wfv1.ShutdownStrategyStop || wf.Labels["workflows.argoproj.io/action"] != "Stop" || wf.Labels["workflows.argoproj.io/actor"] != "alice" {
		t.Fatalf("shutdown %q labels %v", wf.Spec.Shutdown, wf.Labels)
	}
	if wf.Status.Phase == wfv1.WorkflowSucceeded || !strings.Contains(wf.Status.Message, "Stop") {
		t.Fatalf("ended %s with message %q: the shutdown is not recorded", wf.Status.Phase, wf.Status.Message)
	}

	a = fx.call(t, http.MethodPut, path, "alice", "")
	if a.code != http.StatusConflict || !strings.Contains(a.problem(t).Detail, "already finished") {
		t.Fatalf("stop again: %d %s", a.code, a.body)
	}
}

func TestRightsAndBadRequests(t *testing.T) {
	fx := setup(t)
	wfPath := "/api/v1/namespaces/" + fx.ns + "/workflows"
	good := `{"resourceName":"build","app":"shop"}`

	cases := []struct {
		name, method, path, user, body string
		want                           int
		field                          string
	}{
		{"no token", http.MethodPost, wfPath, "", good, 401, ""},
		{"token the API server rejects", http.MethodGet, wfPath, "bogus", "", 401, ""},
		{"submit without RBAC", http.MethodPost, wfPath, "bob", good, 403, ""},
		{"list without RBAC", http.MethodGet, wfPath, "bob", "", 403, ""},
		{"get without RBAC", http.MethodGet, wfPath + "/anything", "bob", "", 403, ""},
		{"archive without RBAC", http.MethodGet, "/api/v1/archived-workflows?namespace=" + fx.ns, "bob", "", 403, ""},
		{"unknown parameter", http.MethodPost, wfPath, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"parameters":["colour=red"]}}`, 400, "submitOptions.parameters[0]"},
		{"invalid name", http.MethodPost, wfPath, "alice", `{"resourceName":"build","app":"shop","submitOptions":{"name":"Not_A_Name"}}`, 400, "submitOptions.name"},
		{"invalid namespace", http.MethodPost, "/api/v1/namespaces/Bad_NS/workflows", "alice", good, 400, "namespace"},
		{"missing template", http.MethodPost, wfPath, "alice", `{"resourceName":"absent","app":"shop"}`, 404, ""},
		{"missing workflow", http.MethodGet, wfPath + "/absent", "alice", "", 404, ""},
		{"stop a missing workflow", http.MethodPut, wfPath + "/absent/stop", "alice", "", 404, ""},
		{"bad list query", http.MethodGet, wfPath + "?phase=Done", "alice", "", 400, "phase"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := fx.call(t, c.method, c.path, c.user, c.body)
			if a.code != c.want {
				t.Fatalf("%d, want %d: %s", a.code, c.want, a.body)
			}
			p := a.problem(t)
			if c.field != "" {
				found := false
				for _, fe := range p.Errors {
					found = found || fe.Field == c.field
				}
				if !found {
					t.Fatalf("no field error for %s: %+v", c.field, p)
				}
			}
		})
	}

	// Nothing was created by the refused requests.
	l, err := fx.admin.ArgoprojV1alpha1().Workflows(fx.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(l.Items) != 0 {
		t.Fatalf("workflows created: %d %v", len(l.Items), err)
	}

	// After a grant, bob may (RBAC decides, not the function).
	fx.env.Grant(t, fx.ns, "bob", "edit")
	waitUntil(t, 10*time.Second, "bob may list after the grant", func() (bool, string) {
		a := fx.call(t, http.MethodGet, wfPath, "bob", "")
		return a.code == http.StatusOK, fmt.Sprint(a.code)
	})
}

func TestCloudEventsReachTheHandler(t *testing.T) {
	fx := setup(t)
	sub := fx.submit(t, "alice", `{"resourceName":"long","app":"shop","taskType":"deploy"}`)
	data := workflows.FinishedData{Namespace: fx.ns, Name: sub.Name, UID: sub.UID, Phase: "Failed"}

	for _, mode := range []string{"binary", "structured"} {
		t.Run(mode, func(t *testing.T) {
			e := event.New()
			e.SetID(mode + "-1")
			e.SetType(workflows.EventWorkflowFinished)
			e.SetSource("/argo/exit-hook")
			if err := e.SetData(event.ApplicationJSON, data); err != nil {
				t.Fatal(err)
			}
			ctx := cloudevents.ContextWithTarget(context.Background(), fx.url+function.EventsPath)
			if mode == "structured" {
				ctx = cloudevents.WithEncodingStructured(ctx)
			} else {
				ctx = cloudevents.WithEncodingBinary(ctx)
			}
			c, err := cloudevents.NewClientHTTP(cehttp.WithHeader("Authorization", "Bearer "+fx.sender))
			if err != nil {
				t.Fatal(err)
			}
			reply, res := c.Request(ctx, e)
			if !cloudevents.IsACK(res) {
				t.Fatalf("NACK: %v", res)
			}
			if reply == nil || reply.Type() != workflows.EventWorkflowHistory || reply.Subject() != fx.ns+"/shop" {
				t.Fatalf("reply %v", reply)
			}
			var entry wfv1.Workflow
			if err := json.Unmarshal(reply.Data(), &entry); err != nil {
				t.Fatal(err)
			}
			// Enriched from the cluster: the hook sends no labels.
			if entry.Labels["dwp.io/task"] != "deploy" || entry.Labels[workflows.LabelCreator] != "alice" || entry.Status.Phase != wfv1.WorkflowFailed {
				t.Fatalf("history entry %+v", entry)
			}
		})
	}

	malformed := []struct {
		name    string
		headers map[string]string
		body    string
	}{
		{"not a CloudEvent", map[string]string{"Content-Type": "application/json"}, `{"namespace":"x"}`},
		{"structured, not JSON", map[string]string{"Content-Type": "application/cloudevents+json"}, `{"specversion":"1.0",`},
		{"binary, no source", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Type": workflows.EventWorkflowFinished, "Content-Type": "application/json"}, `{}`},
		{"bad data", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": workflows.EventWorkflowFinished, "Content-Type": "application/json"}, `{"namespace":"` + fx.ns + `","name":"x","uid":"u","phase":"Running"}`},
		{"unknown type", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/x", "Ce-Type": "io.dwp.unknown.v1", "Content-Type": "application/json"}, `{}`},
	}
	for _, m := range malformed {
		t.Run("malformed "+m.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, fx.url+function.EventsPath, strings.NewReader(m.body))
			req.Header.Set("Authorization", "Bearer "+fx.sender)
			for k, v := range m.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || len(strings.TrimSpace(string(body))) == 0 {
				t.Fatalf("%d %q: want 400 with a reason", resp.StatusCode, body)
			}
		})
	}
}
