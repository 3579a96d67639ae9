package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/problem"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

type applicationEvent struct {
	Type        string                    `json:"type"`
	Application *upstream.ApplicationView `json:"application"`
}

func decodeApplication(t *testing.T, ev sse.Event) applicationEvent {
	t.Helper()
	var a applicationEvent
	if err := json.Unmarshal([]byte(ev.Data), &a); err != nil {
		t.Fatalf("application event %q: %v", ev.Data, err)
	}
	return a
}

// newApplication is an app's Application as the task function makes it, with a status
// as Argo CD writes it while the first sync runs.
func newApplication(argoNS, ns, app string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name":      ns + "." + app,
			"namespace": argoNS,
			"labels":    map[string]any{events.LabelAppNamespace: ns, events.LabelApp: app},
		},
		"spec": map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": "http://git.example/gitops.git", "path": "apps/" + ns + "/" + app, "targetRevision": "main"},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": ns},
		},
		"status": map[string]any{
			"reconciledAt": "2026-01-02T03:04:05Z",
			"sync":         map[string]any{"status": "OutOfSync", "revision": "c0ffee"},
			"health":       map[string]any{"status": "Progressing"},
			"operationState": map[string]any{
				"phase": "Running", "message": "one resource left", "startedAt": "2026-01-02T03:04:00Z",
				"operation": map[string]any{"sync": map[string]any{"revision": "c0ffee"}},
			},
			"resources": []any{
				map[string]any{"group": "apps", "version": "v1", "kind": "Deployment", "namespace": ns, "name": app,
					"status": "OutOfSync", "health": map[string]any{"status": "Progressing", "message": "0 of 1 updated"}},
				map[string]any{"version": "v1", "kind": "ConfigMap", "namespace": ns, "name": app + "-config", "status": "Synced"},
			},
		},
	}}
}

// setStatus edits the Application's status as Argo CD does: Applications have no status
// subresource, the whole object is updated.
func setStatus(t *testing.T, apps dynamic.ResourceInterface, name string, edit func(status map[string]any)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := apps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	edit(u.Object["status"].(map[string]any))
	if _, err := apps.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Must show: an app's Application stream says there is none before the first deploy and
// follows on; its viewers (plain and multiplexed) share one upstream watch and get the
// changes a portal shows, not Argo CD's periodic rewrites; a viewer resumes with
// Last-Event-ID; who may not see the app's pods is refused; deletion is a message.
func TestApplicationStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	// Argo CD's namespace is one of the test's own: no Argo CD reconciles there (the test
	// writes the status as Argo CD would), and parallel tests do not meet.
	argoNS := env.Namespace(t)
	r := startRouter(t, env, func(c *server.Config) { c.ArgoCDNamespace = argoNS })
	env.Grant(t, ns, "alice", "view")
	alice := env.Token(t, "alice")
	apps := env.AdminDynamic(t).Resource(upstream.ApplicationsResource).Namespace(argoNS)
	path := "namespaces/" + ns + "/apps/web/application"
	name := ns + ".web"
	ctx := context.Background()

	first := r.open(t, path, alice, "")
	ev := first.next(t, 10*time.Second)
	if a := decodeApplication(t, ev); ev.Type != "application" || a.Type != "application" || a.Application != nil {
		t.Fatalf("before the first deploy: %+v, want no Application", ev)
	}

	if _, err := apps.Create(ctx, newApplication(argoNS, ns, "web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev = first.next(t, 10*time.Second)
	a := decodeApplication(t, ev).Application
	if ev.Type != "application" || a == nil || a.Name != name || a.Sync.Status != "OutOfSync" || a.Sync.Revision != "c0ffee" ||
		a.Health.Status != "Progressing" || a.OperationState == nil || a.OperationState.Phase != "Running" || len(a.Resources) != 2 ||
		a.Resources[1].Kind != "Deployment" || a.Resources[1].Health == nil || a.Resources[1].Health.Message != "0 of 1 updated" {
		t.Fatalf("once created: %s", ev.Data)
	}

	second := r.open(t, path, alice, "")
	if ev := second.next(t, 10*time.Second); ev.Type != "application" || !strings.Contains(ev.Data, `"Progressing"`) {
		t.Fatalf("second viewer starts with %+v", ev)
	}
	mux := r.open(t, "mux?"+url.Values{"subscribe": {"cd:" + path}}.Encode(), alice, "")
	if ev := mux.next(t, 10*time.Second); ev.Type != "session" {
		t.Fatalf("mux starts with %+v", ev)
	}
	if ev := mux.next(t, 10*time.Second); ev.Type != "cd" || decodeApplication(t, ev).Application == nil {
		t.Fatalf("mux subscription starts with %+v", ev)
	}

	// A reconciliation that changes nothing a portal shows sends nothing: each viewer's
	// next event is the deploy's end.
	setStatus(t, apps, name, func(s map[string]any) { s["reconciledAt"] = "2026-01-02T03:04:15Z" })
	setStatus(t, apps, name, func(s map[string]any) {
		s["reconciledAt"] = "2026-01-02T03:04:25Z"
		s["sync"] = map[string]any{"status": "Synced", "revision": "c0ffee"}
		s["health"] = map[string]any{"status": "Healthy"}
		op := s["operationState"].(map[string]any)
		op["phase"], op["message"], op["finishedAt"] = "Succeeded", "successfully synced (all tasks run)", "2026-01-02T03:04:20Z"
		res := s["resources"].([]any)
		res[0].(map[string]any)["status"] = "Synced"
		res[0].(map[string]any)["health"] = map[string]any{"status": "Healthy"}
	})
	var secondLast string
	for i, c := range []*client{first, second, mux} {
		ev := c.next(t, 10*time.Second)
		a := decodeApplication(t, ev).Application
		if a == nil || a.Health.Status != "Healthy" || a.Sync.Status != "Synced" || a.OperationState.Phase != "Succeeded" ||
			a.OperationState.FinishedAt != "2026-01-02T03:04:20Z" || a.Resources[1].Health.Status != "Healthy" {
			t.Fatalf("viewer %d: after the sync got %s", i, ev.Data)
		}
		if c == second {
			secondLast = ev.ID
		}
	}
	for sample, want := range map[string]float64{
		`dwp_sse_upstream_requests_total{kind="application",verb="list"}`:  1,
		`dwp_sse_upstream_requests_total{kind="application",verb="watch"}`: 1,
		`dwp_sse_upstreams{kind="application"}`:                            1,
		`dwp_sse_topics{kind="application"}`:                               1,
		`dwp_sse_clients{kind="application"}`:                              2,
	} {
		if got := r.metric(t, sample); got != want {
			t.Errorf("%s = %v, want %v", sample, got, want)
		}
	}

	// A viewer away during a change gets exactly it when it comes back.
	second.close()
	setStatus(t, apps, name, func(s map[string]any) {
		s["health"] = map[string]any{"status": "Degraded", "message": "web: CrashLoopBackOff"}
	})
	missed := first.next(t, 10*time.Second)
	if !strings.Contains(missed.Data, "CrashLoopBackOff") {
		t.Fatalf("the change: %+v", missed)
	}
	back := r.open(t, path, alice, secondLast)
	if ev := back.next(t, 10*time.Second); ev.ID != missed.ID || ev.Data != missed.Data {
		t.Fatalf("resumed from %s with %+v, want the missed %+v", secondLast, ev, missed)
	}

	// Carol may not see the app's pods: refused, alone and as a subscription.
	carol := env.Token(t, "carol")
	for _, p := range []string{path, "mux?" + url.Values{"subscribe": {"cd:" + path}}.Encode()} {
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/api/v1/stream/"+p, nil)
		req.Header.Set("Authorization", "Bearer "+carol)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var pr problem.Problem
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Content-Type") != problem.ContentType ||
			json.Unmarshal(body, &pr) != nil || !strings.Contains(pr.Detail, `user "carol" may not list pods in namespace "`+ns+`"`) {
			t.Errorf("%s as carol: %d %s %s", p, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}

	if err := apps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{first, back} {
		ev := c.next(t, 10*time.Second)
		if d := decodeApplication(t, ev); ev.Type != "deleted" || d.Type != "deleted" || d.Application != nil {
			t.Fatalf("deletion: %+v", ev)
		}
	}
}
