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

// applicationHandler emits an app's Argo CD Application's changes for the summaries
// (applications.go), and rechecks the steps of the app's workflows when it changes, so
// that a deploy ends as soon as Argo CD says it is done.
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
			u, ok := obj.(*unstructured.Unstructured)
			if !ok {
				return
			}
			// Sent even from the initial list: Run does not wait for this informer, so
			// the first round may list before it and miss a change made in between.
			// Applications are few.
			w.applicationChanged(nil, u)
			if !initial {
				changed(obj)
			}
		},
		UpdateFunc: func(oldObj, obj any) {
			if o, ok := oldObj.(*unstructured.Unstructured); ok {
				if u, ok := obj.(*unstructured.Unstructured); ok {
					w.applicationChanged(o, u)
				}
			}
			changed(obj)
		},
		DeleteFunc: func(obj any) {
			final := true
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj, final = t.Obj, false
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				w.applicationDeleted(u, final)
			}
			changed(obj)
		},
	}
}

// ApplicationsResource is Argo CD's Application resource.
var ApplicationsResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// WatchApplications makes Run follow the Argo CD Applications of apps (those labelled
// with LabelApp and LabelAppNamespace, of the watched namespaces) in namespace: their
// sync and health go to the summaries, and an app's waiting steps are rechecked when
// its Application changes. Call it before Run.
func (w *Watcher) WatchApplications(dyn dynamic.Interface, namespace string) {
	inf := dynamicinformer.NewFilteredDynamicInformer(dyn, ApplicationsResource, namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = w.applicationSelector() }).Informer()
	_ = inf.SetTransform(func(obj any) (any, error) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			return slimApplication(u), nil
		}
		return obj, nil
	})
	w.applications = inf
	w.applicationClient = dyn.Resource(ApplicationsResource).Namespace(namespace)
	w.argoCDNamespace = namespace
}
