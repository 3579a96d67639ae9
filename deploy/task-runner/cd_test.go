// Package taskrunner_test keeps the CD Task Runners (cd.yaml) in step with what the task
// function reads: each template's parameters are its kind's (functions/gitops/manifest),
// and its steps are the function's. `go test ./deploy/task-runner -update` rewrites cd.yaml.
package taskrunner_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/functions/gitops"
	"github.com/dwp-sre/dwp-sre/functions/gitops/cdrun"
	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
)

var update = flag.Bool("update", false, "rewrite cd.yaml")

const header = `# The CD Task Runners: GitOps deploys as Argo workflows. Each step is a suspend node that
# the task function performs (functions/gitops): it renders the run into the app's folder of
# the GitOps repository and commits, ensures the app's Argo CD Application, and waits until
# Argo CD reports the commit Synced and Healthy. Submit them through the task function (it
# validates and seals the run); a workflow made any other way is failed at its first step.
# Generated from the function's parameter tables: go test ./deploy/task-runner -update
`

var descriptions = map[string]string{
	string(manifest.KindProject):    "A project: its Namespace, the Task Runner's ServiceAccount and the members' RoleBindings. The app is the project's name.",
	string(manifest.KindAppService): "Deploy an app service: Deployment and Service, optional Ingress and HorizontalPodAutoscaler.",
	string(manifest.KindHelm):       "A Helm release: install a chart, upgrade its version, change its values.",
	string(manifest.KindJob):        "Run a Job.",
	string(manifest.KindCronJob):    "A CronJob: create it, change its schedule, suspend or resume it.",
	string(manifest.KindVolume):     "A PersistentVolumeClaim: create or resize it.",
	cdrun.KindAppDelete:             "Delete the app's Argo CD Application, every object it created, and the app's folder in the GitOps repository.",
}

func timeoutParameter() wfv1.Parameter {
	return wfv1.Parameter{Name: gitops.ParamTimeout, Value: wfv1.AnyStringPtr("10m"),
		Description: wfv1.AnyStringPtr("How long to wait for Argo CD to report the change Synced and Healthy (a duration such as 5m).")}
}

func template(kind string) wfv1.ClusterWorkflowTemplate {
	t := wfv1.ClusterWorkflowTemplate{
		TypeMeta: metav1.TypeMeta{APIVersion: "argoproj.io/v1alpha1", Kind: "ClusterWorkflowTemplate"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   "dwp-cd-" + kind,
			Labels: map[string]string{"app.kubernetes.io/part-of": "dwp-sre"},
			Annotations: map[string]string{
				cdrun.AnnotationTemplateKind:        kind,
				"workflows.argoproj.io/description": descriptions[kind],
			},
		},
	}
	if kind == cdrun.KindAppDelete {
		t.Name = "dwp-app-delete"
		t.Spec.Entrypoint = "delete"
		t.Spec.Arguments.Parameters = []wfv1.Parameter{timeoutParameter()}
		t.Spec.Templates = []wfv1.Template{
			{Name: "delete", Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{{Name: "delete", Template: gitops.StepDelete}}}}},
			{Name: gitops.StepDelete, Suspend: &wfv1.SuspendTemplate{}},
		}
		return t
	}
	for _, p := range manifest.Parameters(manifest.Kind(kind)) {
		wp := wfv1.Parameter{Name: p.Name, Description: wfv1.AnyStringPtr(p.Description)}
		if !p.Required {
			wp.Value = wfv1.AnyStringPtr(p.Default)
		}
		for _, e := range p.Enum {
			wp.Enum = append(wp.Enum, wfv1.AnyString(e))
		}
		t.Spec.Arguments.Parameters = append(t.Spec.Arguments.Parameters, wp)
	}
	t.Spec.Arguments.Parameters = append(t.Spec.Arguments.Parameters, timeoutParameter())
	t.Spec.Entrypoint = "deploy"
	t.Spec.Templates = []wfv1.Template{
		{Name: "deploy", Steps: []wfv1.ParallelSteps{
			{Steps: []wfv1.WorkflowStep{{Name: "commit", Template: gitops.StepCommit}}},
			{Steps: []wfv1.WorkflowStep{{Name: "sync", Template: gitops.StepSync, Arguments: wfv1.Arguments{Parameters: []wfv1.Parameter{
				{Name: gitops.ParamRevision, Value: wfv1.AnyStringPtr("{{steps.commit.outputs.parameters." + gitops.ParamRevision + "}}")},
			}}}}},
		}},
		{Name: gitops.StepCommit, Suspend: &wfv1.SuspendTemplate{}, Outputs: wfv1.Outputs{Parameters: []wfv1.Parameter{
			{Name: gitops.ParamRevision, ValueFrom: &wfv1.ValueFrom{Supplied: &wfv1.SuppliedValueFrom{}}},
		}}},
		{Name: gitops.StepSync, Suspend: &wfv1.SuspendTemplate{}, Inputs: wfv1.Inputs{Parameters: []wfv1.Parameter{{Name: gitops.ParamRevision}}}},
	}
	return t
}

func render(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	kinds := []string{}
	for _, k := range manifest.Kinds() {
		kinds = append(kinds, string(k))
	}
	for _, k := range append(kinds, cdrun.KindAppDelete) {
		j, err := json.Marshal(template(k))
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := json.Unmarshal(j, &obj); err != nil {
			t.Fatal(err)
		}
		y, err := yaml.Marshal(prune(obj))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "---\n%s", y)
	}
	return b.Bytes()
}

// prune drops the empty objects and nulls the typed structs always write (inputs: {},
// creationTimestamp: null), but keeps suspend: {}, which means "suspend".
func prune(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			e = prune(e)
			if m, ok := e.(map[string]any); (ok && len(m) == 0 && k != "suspend" && k != "supplied") || e == nil {
				delete(x, k)
				continue
			}
			x[k] = e
		}
	case []any:
		for i := range x {
			x[i] = prune(x[i])
		}
	}
	return v
}

func TestCDTemplatesMatchTheFunction(t *testing.T) {
	want := render(t)
	if *update {
		if err := os.WriteFile("cd.yaml", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("cd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("cd.yaml differs from the function's parameter tables and steps: run go test ./deploy/task-runner -update")
	}
}
