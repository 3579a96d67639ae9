// Package state turns pods and Argo Workflows into the states the watcher's events carry
// (internal/events): only what the app summaries need, each a function of the object
// alone, so that the same object always makes the same state.
package state

import (
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// LabelWorkflowPod marks the pods Argo runs for a workflow; they are CI/CD, not the app.
const LabelWorkflowPod = "workflows.argoproj.io/workflow"

// LabelWorkflowTemplate is the WorkflowTemplate a workflow was submitted from.
const LabelWorkflowTemplate = "workflows.argoproj.io/workflow-template"

// problemReasons are container waiting reasons meaning the container cannot run.
var problemReasons = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "ErrImageNeverPull": true,
	"InvalidImageName": true, "CreateContainerConfigError": true, "CreateContainerError": true,
	"RunContainerError": true, "PreStartHookError": true, "PostStartHookError": true,
}

// Pod is the state of a pod of app.
func Pod(p *corev1.Pod, app string, ord events.Ordering) events.Pod {
	s := events.Pod{
		Namespace: p.Namespace, App: app, Name: p.Name, UID: string(p.UID),
		Ordering: ord, ResourceVersion: p.ResourceVersion,
		Phase: string(p.Status.Phase), Terminating: p.DeletionTimestamp != nil,
	}
	if s.Phase == "" {
		s.Phase = string(corev1.PodPending)
	}
	latest := p.CreationTimestamp.Time
	later := func(t *metav1.Time) {
		if t != nil && t.After(latest) {
			latest = t.Time
		}
	}
	later(p.Status.StartTime)
	later(p.DeletionTimestamp)
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == corev1.PodReady {
			s.Ready = c.Status == corev1.ConditionTrue
		}
		later(&c.LastTransitionTime)
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			cs := &list[i]
			s.Restarts += cs.RestartCount
			if w := cs.State.Waiting; w != nil && s.Problem == "" && problemReasons[w.Reason] {
				s.Problem = w.Reason
			}
			if r := cs.State.Running; r != nil {
				later(&r.StartedAt)
			}
			if t := cs.State.Terminated; t != nil {
				later(&t.FinishedAt)
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				later(&t.FinishedAt)
			}
		}
	}
	s.ChangedAt = latest.UTC()
	if s.ChangedAt.IsZero() {
		// Never for objects from an API server, which sets creationTimestamp.
		s.ChangedAt = time.Unix(0, 0).UTC()
	}
	return s
}

// Workflow is the state of a workflow of app. The task is the task label's value, else
// the WorkflowTemplate's name (label or reference), else empty.
func Workflow(w *wfv1.Workflow, app, taskLabel string, ord events.Ordering) events.Workflow {
	s := events.Workflow{
		Namespace: w.Namespace, App: app, Name: w.Name, UID: string(w.UID),
		Ordering: ord, ResourceVersion: w.ResourceVersion,
		Phase: string(w.Status.Phase), Message: events.TruncateMessage(w.Status.Message),
		CreatedAt: w.CreationTimestamp.UTC(), StartedAt: utc(w.Status.StartedAt), FinishedAt: utc(w.Status.FinishedAt),
	}
	for _, task := range []string{w.Labels[taskLabel], w.Labels[LabelWorkflowTemplate], templateRef(w)} {
		if task != "" && len(validation.IsValidLabelValue(task)) == 0 {
			s.Task = task
			break
		}
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = time.Unix(0, 0).UTC()
	}
	return s
}

func templateRef(w *wfv1.Workflow) string {
	if w.Spec.WorkflowTemplateRef != nil {
		return w.Spec.WorkflowTemplateRef.Name
	}
	return ""
}

func utc(t metav1.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// Orderer gives ordering keys: resourceVersions read as decimal integers, or, from the
// first resourceVersion that is not one, the watcher's clock (see internal/events).
type Orderer struct {
	now func() time.Time

	mu       sync.Mutex
	fallback bool
	last     events.Ordering
	// OnFallback, when set, is called once when the clock takes over, with the
	// resourceVersion that could not be read.
	OnFallback func(rv string)
}

// NewOrderer returns an Orderer reading the clock now (time.Now when nil).
func NewOrderer(now func() time.Time) *Orderer {
	if now == nil {
		now = time.Now
	}
	return &Orderer{now: now}
}

// Of is the ordering key of an object at resourceVersion rv.
func (o *Orderer) Of(rv string) events.Ordering {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.fallback {
		if ord, err := events.ParseOrdering(rv); err == nil {
			return ord
		}
		o.fallback = true
		if o.OnFallback != nil {
			o.OnFallback(rv)
		}
	}
	return o.tickLocked()
}

// Clock is a reading of the clock as an ordering key, strictly greater than the previous
// one; a full-state round takes it before it lists, for use should it fall back.
func (o *Orderer) Clock() events.Ordering {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tickLocked()
}

// Fallback says whether the clock has taken over.
func (o *Orderer) Fallback() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fallback
}

func (o *Orderer) tickLocked() events.Ordering {
	t := events.Ordering(o.now().UnixMicro())
	if t <= o.last {
		t = o.last + 1
	}
	o.last = t
	return t
}
