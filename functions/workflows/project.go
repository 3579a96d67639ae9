package workflows

import (
	"encoding/json"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Labels and annotations Argo and this family put on workflows.
const (
	LabelWorkflowTemplate        = "workflows.argoproj.io/workflow-template"
	LabelClusterWorkflowTemplate = "workflows.argoproj.io/cluster-workflow-template"
	LabelPhase                   = "workflows.argoproj.io/phase"
	LabelCompleted               = "workflows.argoproj.io/completed"
	// LabelCreator is Argo's creator label: the submitting user, made label-safe.
	LabelCreator = "workflows.argoproj.io/creator"
	// AnnotationSubmittedBy is the submitting user's name exactly as the API server knows it.
	AnnotationSubmittedBy = "dwp.io/submitted-by"
)

var workflowsGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflows"}

// Projections of a workflow in answers.
const (
	// ProjectionSummary leaves out what can be large (status.nodes, stored templates,
	// the spec's templates): what a history list needs.
	ProjectionSummary = "summary"
	// ProjectionFull is the whole object (without managedFields).
	ProjectionFull = "full"
)

// Summary is wf without what makes workflows big. Lists of big workflows are the classic
// memory trap: status.nodes alone can be megabytes.
func Summary(wf *wfv1.Workflow) wfv1.Workflow {
	return wfv1.Workflow{
		TypeMeta: metav1.TypeMeta{Kind: "Workflow", APIVersion: "argoproj.io/v1alpha1"},
		ObjectMeta: metav1.ObjectMeta{
			Name:              wf.Name,
			Namespace:         wf.Namespace,
			UID:               wf.UID,
			ResourceVersion:   wf.ResourceVersion,
			CreationTimestamp: wf.CreationTimestamp,
			Labels:            wf.Labels,
			Annotations:       wf.Annotations,
		},
		Spec: wfv1.WorkflowSpec{
			Entrypoint:          wf.Spec.Entrypoint,
			Arguments:           wf.Spec.Arguments,
			ServiceAccountName:  wf.Spec.ServiceAccountName,
			WorkflowTemplateRef: wf.Spec.WorkflowTemplateRef,
			Shutdown:            wf.Spec.Shutdown,
			Suspend:             wf.Spec.Suspend,
		},
		Status: wfv1.WorkflowStatus{
			Phase:             wf.Status.Phase,
			StartedAt:         wf.Status.StartedAt,
			FinishedAt:        wf.Status.FinishedAt,
			EstimatedDuration: wf.Status.EstimatedDuration,
			Progress:          wf.Status.Progress,
			Message:           wf.Status.Message,
			Conditions:        wf.Status.Conditions,
			ResourcesDuration: wf.Status.ResourcesDuration,
		},
	}
}

// Full is wf as the API server has it, without managedFields (bookkeeping of no use to a
// portal, and large).
func Full(wf *wfv1.Workflow) wfv1.Workflow {
	out := *wf.DeepCopy()
	out.ManagedFields = nil
	out.TypeMeta = metav1.TypeMeta{Kind: "Workflow", APIVersion: "argoproj.io/v1alpha1"}
	return out
}

func project(wf *wfv1.Workflow, projection string) wfv1.Workflow {
	if projection == ProjectionFull {
		return Full(wf)
	}
	return Summary(wf)
}

// WorkflowList is a page of workflows, shaped as Argo's and Kubernetes' lists are.
type WorkflowList struct {
	Items    []wfv1.Workflow `json:"items"`
	Metadata ListMeta        `json:"metadata"`
}

// MarshalJSON writes an empty page's items as [] rather than null: clients iterate them
// without a check, as they do Kubernetes' lists.
func (l WorkflowList) MarshalJSON() ([]byte, error) {
	type plain WorkflowList
	if l.Items == nil {
		l.Items = []wfv1.Workflow{}
	}
	return json.Marshal(plain(l))
}

// ListMeta carries the token for the next page; empty on the last page.
type ListMeta struct {
	Continue string `json:"continue,omitempty"`
}
