package watch

import (
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

func cdWorkflow(rv string, shutdown wfv1.ShutdownStrategy, nodes ...wfv1.NodeStatus) *wfv1.Workflow {
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: "deploy-x", Namespace: "shop", UID: "u-1", ResourceVersion: rv, Labels: map[string]string{"app": "web"}},
		Spec:       wfv1.WorkflowSpec{Shutdown: shutdown},
		Status:     wfv1.WorkflowStatus{Phase: wfv1.WorkflowRunning, Nodes: wfv1.Nodes{}},
	}
	for _, n := range nodes {
		wf.Status.Nodes[n.ID] = n
	}
	return wf
}

func node(id, template string, typ wfv1.NodeType, phase wfv1.NodePhase) wfv1.NodeStatus {
	return wfv1.NodeStatus{ID: id, Name: id, TemplateName: template, Type: typ, Phase: phase, Message: "big", Outputs: &wfv1.Outputs{}}
}

func TestStepEvents(t *testing.T) {
	commit := node("deploy-x-1", "gitops-commit", wfv1.NodeTypeSuspend, wfv1.NodeRunning)
	commitDone := node("deploy-x-1", "gitops-commit", wfv1.NodeTypeSuspend, wfv1.NodeSucceeded)
	sync := node("deploy-x-2", "gitops-sync", wfv1.NodeTypeSuspend, wfv1.NodeRunning)
	approval := node("deploy-x-3", "approve", wfv1.NodeTypeSuspend, wfv1.NodeRunning) // a person's suspend, not ours
	pod := node("deploy-x-4", "gitops-lookalike", wfv1.NodeTypePod, wfv1.NodeRunning) // not a suspend node
	tests := []struct {
		name     string
		old, new *wfv1.Workflow
		want     []string // nodes of the step events, in order
	}{
		{"new workflow with a waiting step", nil, cdWorkflow("2", "", commit, approval, pod), []string{"deploy-x-1"}},
		{"a step starts waiting", cdWorkflow("2", "", commitDone), cdWorkflow("3", "", commitDone, sync), []string{"deploy-x-2"}},
		{"still waiting: no event", cdWorkflow("2", "", sync), cdWorkflow("3", "", sync), nil},
		{"stopped while waiting", cdWorkflow("2", "", sync), cdWorkflow("3", wfv1.ShutdownStrategyStop, sync), []string{"deploy-x-2"}},
		{"done: no event", cdWorkflow("2", "", commit), cdWorkflow("3", "", commitDone), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			w := New(Config{Cluster: "c1", AppLabel: "app", TaskLabel: "dwp.io/task"}, nil, nil, rec, NewMetrics(prometheus.NewRegistry()), quiet())
			w.workflowChanged(tt.old, tt.new)
			var got []string
			for _, e := range rec.all() {
				if e.Type() != events.TypeWorkflowStep {
					continue
				}
				_, s, err := events.DecodeWorkflowStep(e)
				if err != nil {
					t.Fatal(err)
				}
				if s.Workflow != "deploy-x" || s.App != "web" || s.UID != "u-1" {
					t.Fatalf("step %+v", s)
				}
				got = append(got, s.Node)
			}
			if len(got) != len(tt.want) || (len(got) > 0 && got[0] != tt.want[0]) {
				t.Fatalf("step events for %v, want %v", got, tt.want)
			}
		})
	}
}

// The informers keep of a workflow's nodes only its waiting steps, and little of those.
func TestSlimKeepsOnlyWaitingSteps(t *testing.T) {
	wf := cdWorkflow("2", wfv1.ShutdownStrategyStop,
		node("deploy-x-1", "gitops-commit", wfv1.NodeTypeSuspend, wfv1.NodeSucceeded),
		node("deploy-x-2", "gitops-sync", wfv1.NodeTypeSuspend, wfv1.NodeRunning),
		node("deploy-x-4", "build", wfv1.NodeTypePod, wfv1.NodeRunning))
	out, err := slim(wf)
	if err != nil {
		t.Fatal(err)
	}
	s := out.(*wfv1.Workflow)
	if len(s.Status.Nodes) != 1 || s.Spec.Shutdown != wfv1.ShutdownStrategyStop {
		t.Fatalf("slim kept %d nodes, shutdown %q", len(s.Status.Nodes), s.Spec.Shutdown)
	}
	n := s.Status.Nodes["deploy-x-2"]
	if n.TemplateName != "gitops-sync" || n.Message != "" || n.Outputs != nil {
		t.Fatalf("slim node %+v", n)
	}
}

// A workflow that becomes Succeeded is announced once (CI → CD); one seen already
// succeeded, or changing after, is not.
func TestSucceededEvents(t *testing.T) {
	running := cdWorkflow("2", "")
	running.CreationTimestamp = metav1.Now()
	done := running.DeepCopy()
	done.ResourceVersion = "3"
	done.Status.Phase = wfv1.WorkflowSucceeded
	later := done.DeepCopy()
	later.ResourceVersion = "4"
	later.Status.Message = "archived"
	tests := []struct {
		name     string
		old, new *wfv1.Workflow
		want     int
	}{
		{"becomes Succeeded", running, done, 1},
		{"first seen Succeeded", nil, done, 0},
		{"changes after", done, later, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			w := New(Config{Cluster: "c1", AppLabel: "app", TaskLabel: "dwp.io/task"}, nil, nil, rec, NewMetrics(prometheus.NewRegistry()), quiet())
			w.workflowChanged(tt.old, tt.new)
			if got := rec.count(events.TypeWorkflowSucceeded); got != tt.want {
				t.Fatalf("%d succeeded events, want %d", got, tt.want)
			}
		})
	}
}
