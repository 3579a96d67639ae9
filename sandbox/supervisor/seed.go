package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

const (
	demoNamespace = "demo"
	// seedMarker is a ConfigMap in the demo namespace: the cluster's state, not the
	// launcher's, says whether it was seeded, so `make reset` seeds again.
	seedMarker = "dwp-demo-seeded"
)

var workflowsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// submission is one run the seed submits through the function's API, as alice.
type submission struct {
	Kind, Template, App string
	Parameters          []string
	// CD runs wait for Argo CD, and each is waited for before the next (they commit to
	// one folder of the GitOps repository).
	CD bool
}

// seedRuns are the demo's history: CI runs of its app services and two CD runs of an app
// deployed through GitOps.
var seedRuns = []submission{
	{Kind: "WorkflowTemplate", Template: "ci", App: "web", Parameters: []string{"revision=v1.4.2"}},
	{Kind: "WorkflowTemplate", Template: "ci", App: "api", Parameters: []string{"revision=v2.0.1"}},
	{Kind: "WorkflowTemplate", Template: "ci", App: "worker", Parameters: []string{"revision=main"}},
	{Kind: "ClusterWorkflowTemplate", Template: "dwp-cd-app-service", App: "shop", CD: true,
		Parameters: []string{"image=registry.example/shop:1.0.0", "replicas=2"}},
	{Kind: "ClusterWorkflowTemplate", Template: "dwp-cd-app-service", App: "shop", CD: true,
		Parameters: []string{"image=registry.example/shop:1.1.0", "replicas=2"}},
}

// seed submits the demo's past runs once per cluster, and marks the cluster seeded once
// they have finished. A seed cut short is done again at the next start.
func (r *runner) seed(ctx context.Context, info controlplane.Info) {
	if err := r.seedOnce(ctx, info); err != nil && ctx.Err() == nil {
		fmt.Fprintf(r.cfg.Out, "demo: seeding past runs failed: %v\n", err)
	}
}

func (r *runner) seedOnce(ctx context.Context, info controlplane.Info) error {
	cs, err := adminClient(info)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().ConfigMaps(demoNamespace).Get(ctx, seedMarker, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	fmt.Fprintln(r.cfg.Out, "demo: first start: submitting past CI and CD runs as alice")
	begin := time.Now()
	var names []string
	for _, s := range seedRuns {
		if s.CD {
			// The CD Task Runners wait for Argo CD, which syncs a little after the plane.
			if err := r.waitArgoCD(ctx, 3*time.Minute); err != nil {
				return err
			}
		}
		name, err := submit(ctx, r.cfg.Addrs.Function, info.Tokens["alice"], s)
		if err != nil {
			return err
		}
		names = append(names, name)
		if s.CD {
			if err := waitFinished(ctx, dyn, name, 5*time.Minute); err != nil {
				return err
			}
		}
	}
	for _, name := range names {
		if err := waitFinished(ctx, dyn, name, 3*time.Minute); err != nil {
			return err
		}
	}
	_, err = cs.CoreV1().ConfigMaps(demoNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: seedMarker},
		Data:       map[string]string{"runs": strings.Join(names, "\n")},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("mark seeded: %w", err)
	}
	fmt.Fprintf(r.cfg.Out, "demo: %d past runs finished in %s (%s)\n", len(names), time.Since(begin).Round(time.Second), strings.Join(names, ", "))
	return nil
}

func (r *runner) waitArgoCD(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		info, err := controlplane.ReadInfo(r.clusterDir)
		if err == nil && info.ArgoCDReady {
			return nil
		}
		if err == nil && info.ArgoCDError != "" {
			return fmt.Errorf("argo CD does not sync: %s", info.ArgoCDError)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("argo CD not ready: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// submit posts one run to the function's API and returns the workflow's name.
func submit(ctx context.Context, functionAddr, token string, s submission) (string, error) {
	body, err := json.Marshal(map[string]any{
		"resourceKind": s.Kind, "resourceName": s.Template, "app": s.App,
		"submitOptions": map[string]any{"parameters": s.Parameters},
	})
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := "http://" + functionAddr + "/api/v1/namespaces/" + demoNamespace + "/workflows"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("submit %s for %s: %w", s.Template, s.App, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("submit %s for %s: %s: %s", s.Template, s.App, resp.Status, bytes.TrimSpace(b))
	}
	var out struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Name == "" {
		return "", fmt.Errorf("submit %s for %s: unexpected answer %q", s.Template, s.App, b)
	}
	return out.Name, nil
}

// waitFinished waits until the workflow has a final phase. A failed run is part of the
// history too: only a run that does not end is an error.
func waitFinished(ctx context.Context, dyn dynamic.Interface, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		wf, err := dyn.Resource(workflowsGVR).Namespace(demoNamespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil // finished, archived and collected already
		}
		if err == nil {
			phase, _, _ := unstructured.NestedString(wf.Object, "status", "phase")
			switch phase {
			case "Succeeded", "Failed", "Error":
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("run %s did not finish: %w", name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
