package state

import (
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mt(d time.Duration) metav1.Time { return metav1.NewTime(t0.Add(d).Local()) }

func TestPod(t *testing.T) {
	start, del := mt(2*time.Second), mt(time.Hour)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-1", UID: "u1", ResourceVersion: "77", CreationTimestamp: mt(0)},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, StartTime: &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: mt(5 * time.Second)}},
			InitContainerStatuses: []corev1.ContainerStatus{{RestartCount: 1,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: mt(3 * time.Second)}}}},
			ContainerStatuses: []corev1.ContainerStatus{
				{RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: mt(4 * time.Second)}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{FinishedAt: mt(9 * time.Second)}}},
				{RestartCount: 3, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
			},
		},
	}
	s := Pod(p, "web", 77)
	want := events.Pod{Namespace: "shop", App: "web", Name: "web-1", UID: "u1", Ordering: 77, ResourceVersion: "77",
		Phase: "Running", Ready: true, Restarts: 6, Problem: "CrashLoopBackOff", ChangedAt: t0.Add(9 * time.Second)}
	if s != want {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	p.DeletionTimestamp = &del
	p.Status.ContainerStatuses[1].State.Waiting.Reason = "ContainerCreating" // not a problem
	s = Pod(p, "web", 78)
	if !s.Terminating || s.Problem != "" || !s.ChangedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("terminating: %+v", s)
	}
	if s := Pod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b", UID: "c", CreationTimestamp: mt(0)}}, "x", 1); s.Phase != "Pending" || s.Ready {
		t.Errorf("new pod: %+v", s)
	}
}

func TestWorkflow(t *testing.T) {
	w := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "build-1", UID: "w1", ResourceVersion: "9", CreationTimestamp: mt(0),
			Labels: map[string]string{"dwp.io/task": "build", LabelWorkflowTemplate: "ci"}},
		Spec:   wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "ref"}},
		Status: wfv1.WorkflowStatus{Phase: wfv1.WorkflowFailed, Message: strings.Repeat("x", 5000), StartedAt: mt(time.Second), FinishedAt: mt(time.Minute)},
	}
	s := Workflow(w, "web", "dwp.io/task", 9)
	if s.Task != "build" || s.Phase != "Failed" || len(s.Message) != events.MaxMessageLen || !s.FinishedAt.Equal(t0.Add(time.Minute)) || s.FinishedAt.Location() != time.UTC {
		t.Errorf("%+v", s)
	}
	if err := s.Validate(); err != nil {
		t.Error(err)
	}
	delete(w.Labels, "dwp.io/task")
	if s := Workflow(w, "web", "dwp.io/task", 9); s.Task != "ci" {
		t.Errorf("task from the template label: %q", s.Task)
	}
	delete(w.Labels, LabelWorkflowTemplate)
	if s := Workflow(w, "web", "dwp.io/task", 9); s.Task != "ref" {
		t.Errorf("task from the template reference: %q", s.Task)
	}
	w.Spec.WorkflowTemplateRef = nil
	w.Status = wfv1.WorkflowStatus{}
	if s := Workflow(w, "web", "dwp.io/task", 9); s.Task != "" || s.Phase != "" || !s.StartedAt.IsZero() {
		t.Errorf("fresh workflow: %+v", s)
	}
}

func TestOrderer(t *testing.T) {
	now := time.UnixMicro(1_000_000)
	o := NewOrderer(func() time.Time { return now })
	var fell string
	o.OnFallback = func(rv string) { fell = rv }
	if o.Of("123") != 123 || o.Fallback() {
		t.Fatal("decimal resourceVersion not used")
	}
	a := o.Of("opaque-rv")
	b := o.Of("124") // once fallen back, always the clock
	if fell != "opaque-rv" || a != 1_000_000 || b != 1_000_001 || !o.Fallback() {
		t.Errorf("fallback: %q %d %d", fell, a, b)
	}
	if c := o.Clock(); c <= b {
		t.Errorf("clock not increasing: %d after %d", c, b)
	}
}
