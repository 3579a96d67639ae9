package clustertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var workflowsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// ArchivedRun is a finished, archived workflow whose live object is gone.
type ArchivedRun struct {
	Namespace, Name, UID string
	// StepLogs maps each step's node id to its main container's log as the pod served it
	// while the workflow was live (through the API server's pods/log).
	StepLogs map[string]string
}

// RunArchivedSteps runs a workflow of two container steps (make build, then make test) in
// namespace, waits until it has Succeeded and Argo has archived it, keeps each step pod's
// main log, and deletes the workflow (so only the archive has it). The plane plays Argo's
// executor: each step's log is archived in the artifact repository as main-logs.
func (e *Env) RunArchivedSteps(t testing.TB, namespace string) ArchivedRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	wfs := e.AdminDynamic(t).Resource(workflowsGVR).Namespace(namespace)
	step := func(name string) map[string]any {
		return map[string]any{"name": name, "container": map[string]any{
			"image": "registry.example/build:1", "command": []any{"make"}, "args": []any{name},
		}}
	}
	created, err := wfs.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Workflow",
		"metadata":   map[string]any{"generateName": "steps-", "labels": map[string]any{"app": "shop"}},
		"spec": map[string]any{
			"entrypoint": "main",
			"templates": []any{
				map[string]any{"name": "main", "steps": []any{
					[]any{map[string]any{"name": "build", "template": "build"}},
					[]any{map[string]any{"name": "test", "template": "test"}},
				}},
				step("build"), step("test"),
			},
		},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create workflow: %v", err)
	}
	run := ArchivedRun{Namespace: namespace, Name: created.GetName(), UID: string(created.GetUID()), StepLogs: map[string]string{}}
	var wf *unstructured.Unstructured
	for {
		if wf, err = wfs.Get(ctx, run.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("workflow %s: %v", run.Name, err)
		}
		phase, _, _ := unstructured.NestedString(wf.Object, "status", "phase")
		if phase == "Failed" || phase == "Error" {
			msg, _, _ := unstructured.NestedString(wf.Object, "status", "message")
			t.Fatalf("workflow %s %s: %s", run.Name, phase, msg)
		}
		if phase == "Succeeded" && wf.GetLabels()["workflows.argoproj.io/workflow-archiving-status"] == "Archived" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("workflow %s not Succeeded and archived: phase %q, labels %v", run.Name, phase, wf.GetLabels())
		case <-time.After(200 * time.Millisecond):
		}
	}
	cs := e.AdminClientset(t)
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "workflows.argoproj.io/workflow=" + run.Name})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		node := p.Annotations["workflows.argoproj.io/node-id"]
		b, err := cs.CoreV1().Pods(namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: "main"}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("log of %s: %v", p.Name, err)
		}
		run.StepLogs[node] = string(b)
	}
	if len(run.StepLogs) != 2 {
		t.Fatalf("workflow %s ran %d step pods, want 2", run.Name, len(run.StepLogs))
	}
	nodes, _, _ := unstructured.NestedMap(wf.Object, "status", "nodes")
	for id := range run.StepLogs {
		n, _ := nodes[id].(map[string]any)
		arts, _, _ := unstructured.NestedSlice(n, "outputs", "artifacts")
		if len(arts) == 0 {
			t.Fatalf("node %s of %s has no output artifacts: %v", id, run.Name, n)
		}
	}
	if err := wfs.Delete(ctx, run.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := wfs.Get(ctx, run.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return run
		}
		select {
		case <-ctx.Done():
			t.Fatalf("workflow %s not deleted: %v", run.Name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ArgoServerGet asks the plane's argo-server for path with a bearer token, returning the
// status and body.
func (e *Env) ArgoServerGet(t testing.TB, path, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.ArgoServerURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("argo-server %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(fmt.Errorf("argo-server %s: %w", path, err))
	}
	return resp.StatusCode, string(b)
}
