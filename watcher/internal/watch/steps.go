package watch

import (
	"sort"
	"strings"
	"sync/atomic"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// waitingSteps are the nodes of wf that wait for the task function: running suspend
// nodes of a StepTemplatePrefix template, sorted by id.
func waitingSteps(wf *wfv1.Workflow) []wfv1.NodeStatus {
	var out []wfv1.NodeStatus
	for _, n := range wf.Status.Nodes {
		if isStep(n) && n.Phase == wfv1.NodeRunning {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func isStep(n wfv1.NodeStatus) bool {
	return n.Type == wfv1.NodeTypeSuspend && strings.HasPrefix(n.TemplateName, events.StepTemplatePrefix)
}

// slimSteps keeps of a workflow's nodes only its running steps (waitingSteps), and of
// those only what a step event names.
func slimSteps(nodes wfv1.Nodes) wfv1.Nodes {
	var out wfv1.Nodes
	for id, n := range nodes {
		if isStep(n) && n.Phase == wfv1.NodeRunning {
			if out == nil {
				out = wfv1.Nodes{}
			}
			out[id] = wfv1.NodeStatus{ID: n.ID, Name: n.Name, TemplateName: n.TemplateName, Type: n.Type, Phase: n.Phase}
		}
	}
	return out
}

// stepsChanged emits the steps of wf that started waiting since old, and every waiting
// step when the workflow was just stopped (the function then cancels what the step
// started, such as an Argo CD sync).
func (w *Watcher) stepsChanged(old, wf *wfv1.Workflow, app string) {
	stopped := wf.Spec.Shutdown != "" && (old == nil || old.Spec.Shutdown == "")
	for _, n := range waitingSteps(wf) {
		if old == nil || stopped || old.Status.Nodes[n.ID].Phase != wfv1.NodeRunning {
			w.emitStep(wf, app, n)
		}
	}
}

var stepSeq atomic.Uint64

func (w *Watcher) emitStep(wf *wfv1.Workflow, app string, n wfv1.NodeStatus) {
	s := events.WorkflowStep{
		Namespace: wf.Namespace, App: app, Workflow: wf.Name, UID: string(wf.UID),
		Node: n.ID, Step: n.TemplateName, Ordering: w.order.Of(wf.ResourceVersion),
	}
	e, err := events.NewWorkflowStepEvent(w.cfg.Cluster, s, stepSeq.Add(1), w.now())
	w.metrics.steps.Inc()
	w.emit("step/"+s.UID+"/"+s.Node, s.Ordering, e, err)
}

// recheckSteps emits every waiting step of the cached workflows that match: the function
// then looks again (is Argo CD done? is the step's time up?).
func (w *Watcher) recheckSteps(match func(wf *wfv1.Workflow, app string) bool) {
	for _, inf := range w.workflowInformers {
		for _, obj := range inf.GetStore().List() {
			wf, ok := obj.(*wfv1.Workflow)
			if !ok || wf.DeletionTimestamp != nil {
				continue
			}
			app := wf.Labels[w.cfg.AppLabel]
			if app == "" || len(wf.Status.Nodes) == 0 || (match != nil && !match(wf, app)) {
				continue
			}
			for _, n := range waitingSteps(wf) {
				w.emitStep(wf, app, n)
			}
		}
	}
}

// applicationHandler rechecks the steps of an app's workflows when its Argo CD
// Application changes, so that a deploy ends as soon as Argo CD says it is done.
func (w *Watcher) applicationHandler() cache.ResourceEventHandler {
	changed := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		ns, app := u.GetLabels()[events.LabelAppNamespace], u.GetLabels()[events.LabelApp]
		if ns == "" || app == "" {
			return
		}
		w.recheckSteps(func(wf *wfv1.Workflow, wfApp string) bool { return wf.Namespace == ns && wfApp == app })
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				changed(obj)
			}
		},
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			changed(obj)
		},
	}
}

// ApplicationsResource is Argo CD's Application resource.
var ApplicationsResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// WatchApplications makes Run follow the Argo CD Applications of apps (those labelled
// with LabelApp) in namespace, to recheck an app's waiting steps when its Application
// changes. Call it before Run.
func (w *Watcher) WatchApplications(dyn dynamic.Interface, namespace string) {
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, ApplicationsResource, namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = events.LabelApp }).Informer()
	// Only the labels are read; an Application's status can be large.
	_ = inf.SetTransform(func(obj any) (any, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return obj, nil
		}
		out := &unstructured.Unstructured{}
		out.SetAPIVersion(u.GetAPIVersion())
		out.SetKind(u.GetKind())
		out.SetNamespace(u.GetNamespace())
		out.SetName(u.GetName())
		out.SetUID(u.GetUID())
		out.SetResourceVersion(u.GetResourceVersion())
		out.SetLabels(u.GetLabels())
		return out, nil
	})
	w.applications = inf
}
