package upstream

import (
	"context"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// loopFeed hands what one of the topic's watches sees to the Run loop, as updates U,
// and its failures to the subscribers.
type loopFeed[U any] struct {
	t       *workflowLogTopic
	ctx     context.Context
	updates chan<- U
}

func (f *loopFeed[U]) send(u U) {
	select {
	case f.updates <- u:
	case <-f.ctx.Done():
	}
}

func (f *loopFeed[U]) progress(string)   {}
func (f *loopFeed[U]) failing(err error) { f.t.failing(err) }

// wfWatch turns the workflow's watch into updates for the Run loop.
type wfWatch struct{ loopFeed[wfUpdate] }

func wfState(obj runtime.Object) wfUpdate {
	wf, ok := obj.(*wfv1.Workflow)
	if !ok {
		return wfUpdate{exists: true}
	}
	return wfUpdate{exists: true, completed: wf.Status.Phase.Completed(), phase: string(wf.Status.Phase)}
}

func (w *wfWatch) replace(items []runtime.Object, _ string, _ bool) {
	if len(items) == 0 {
		w.send(wfUpdate{})
		return
	}
	w.send(wfState(items[0]))
}

func (w *wfWatch) event(typ watch.EventType, obj runtime.Object, _ string) {
	if typ == watch.Deleted {
		w.send(wfUpdate{})
		return
	}
	w.send(wfState(obj))
}

// podWatch turns the pods' watch into updates for the Run loop.
type podWatch struct{ loopFeed[podUpdate] }

func (w *podWatch) replace(items []runtime.Object, _ string, _ bool) {
	all := make([]*corev1.Pod, 0, len(items))
	for _, o := range items {
		if p, ok := o.(*corev1.Pod); ok {
			all = append(all, p)
		}
	}
	w.send(podUpdate{all: all})
}

func (w *podWatch) event(typ watch.EventType, obj runtime.Object, _ string) {
	if p, ok := obj.(*corev1.Pod); ok {
		w.send(podUpdate{pod: p, deleted: typ == watch.Deleted})
	}
}
