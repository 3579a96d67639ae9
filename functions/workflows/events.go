package workflows

import (
	"context"
	"fmt"
	"strings"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
	"github.com/dwp-sre/dwp-sre/internal/events"
)

// CloudEvent types of the workflows family (defined, as every type, in internal/events).
const (
	// EventWorkflowFinished is what a workflow's exit hook sends when it ends (an http
	// template posting a binary-mode CloudEvent to the broker); its data is FinishedData.
	EventWorkflowFinished = events.TypeWorkflowFinished
	// EventWorkflowHistory is the reply to EventWorkflowFinished: the finished workflow as
	// a history entry (a summary: labels, template, creator, times, message). No Trigger
	// of this function may match it, or the broker would feed it back in a loop.
	EventWorkflowHistory = events.TypeWorkflowHistory
	// EventSource is the source of the events this family emits.
	EventSource = "/dwp/function/workflows"
)

// FinishedData is the data of EventWorkflowFinished, as an exit hook fills it from Argo's
// variables: {"namespace":"{{workflow.namespace}}","name":"{{workflow.name}}",
// "uid":"{{workflow.uid}}","phase":"{{workflow.status}}"}. Other members are ignored.
type FinishedData struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Phase     string `json:"phase"`
}

func (d *FinishedData) validate() error {
	var errs []string
	if msgs := validation.IsDNS1123Label(d.Namespace); len(msgs) > 0 {
		errs = append(errs, "namespace: "+strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Subdomain(d.Name); len(msgs) > 0 {
		errs = append(errs, "name: "+strings.Join(msgs, "; "))
	}
	if d.UID == "" || len(d.UID) > 128 {
		errs = append(errs, "uid: must be the workflow's uid")
	}
	if !wfv1.WorkflowPhase(d.Phase).Completed() {
		errs = append(errs, fmt.Sprintf("phase: %q is not a final phase (Succeeded, Failed, Error)", d.Phase))
	}
	if len(errs) > 0 {
		return eventrouter.Invalidf("invalid data: %s", strings.Join(errs, ", "))
	}
	return nil
}

// onFinished turns an exit hook's signal into a history entry. The hook knows only what
// Argo's variables hold; the entry adds the workflow's labels (app, task, template,
// creator), times and message, read with the function's own identity (it needs get on
// workflows). When the workflow is already gone, the entry holds what the event said.
func (f *Family) onFinished(ctx context.Context, e event.Event) (*event.Event, error) {
	if ct := e.DataContentType(); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return nil, eventrouter.Invalidf("datacontenttype %q: want application/json", ct)
	}
	var d FinishedData
	if err := e.DataAs(&d); err != nil {
		return nil, eventrouter.Invalidf("data is not a JSON object of namespace, name, uid, phase: %v", err)
	}
	if err := d.validate(); err != nil {
		return nil, err
	}

	entry := wfv1.Workflow{
		TypeMeta:   metav1.TypeMeta{Kind: "Workflow", APIVersion: "argoproj.io/v1alpha1"},
		ObjectMeta: metav1.ObjectMeta{Name: d.Name, Namespace: d.Namespace, UID: types.UID(d.UID)},
	}
	if f.service != nil {
		wf, err := f.service.Argo.ArgoprojV1alpha1().Workflows(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			// Not the event's fault: answer 5xx so the broker retries.
			return nil, fmt.Errorf("get workflow %s/%s: %w", d.Namespace, d.Name, err)
		case string(wf.UID) == d.UID:
			entry = Summary(wf)
		}
	}
	// The exit hook runs before the controller records the final phase.
	if !entry.Status.Phase.Completed() {
		entry.Status.Phase = wfv1.WorkflowPhase(d.Phase)
	}
	if entry.Status.FinishedAt.IsZero() {
		entry.Status.FinishedAt = metav1.NewTime(f.now().UTC().Truncate(time.Second))
	}

	reply := event.New()
	// The id is stable for one workflow's end, so consumers can drop redelivered duplicates.
	reply.SetID(d.UID + "." + d.Phase)
	reply.SetType(EventWorkflowHistory)
	reply.SetSource(EventSource)
	// The subject names the app, as every event about an app does; unknown, the namespace.
	subject := d.Namespace
	if app := entry.Labels[f.cfg.AppLabel]; app != "" {
		subject = events.Subject(d.Namespace, app)
	}
	reply.SetSubject(subject)
	reply.SetTime(f.now())
	reply.SetExtension("workflowname", d.Name)
	if err := reply.SetData(event.ApplicationJSON, entry); err != nil {
		return nil, fmt.Errorf("history entry: %w", err)
	}
	return &reply, nil
}
