package events

import (
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

func newEvent(cluster, typ, id, subject string, ord Ordering, data any, now time.Time) (event.Event, error) {
	if err := ValidateClusterName(cluster); err != nil {
		return event.Event{}, err
	}
	e := event.New()
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(Source(cluster))
	if subject != "" {
		e.SetSubject(subject)
	}
	e.SetTime(now)
	e.SetExtension(ExtensionOrdering, ord.String())
	if err := e.SetData(ContentType, data); err != nil {
		return event.Event{}, fmt.Errorf("%s: encode data: %w", typ, err)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("%s: %w", typ, err)
	}
	return e, nil
}

// NewPodEvent is the event saying that a pod of an app changed (or, with deleted, is
// gone) in cluster.
func NewPodEvent(cluster string, deleted bool, p Pod, now time.Time) (event.Event, error) {
	if err := p.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	typ, id := TypePodChanged, "pod."+p.UID+"."+p.Ordering.String()
	if deleted {
		typ, id = TypePodDeleted, id+".deleted"
	}
	return newEvent(cluster, typ, id, Subject(p.Namespace, p.App), p.Ordering, p, now)
}

// NewWorkflowEvent is the event saying that a workflow of an app changed (or, with
// deleted, is gone) in cluster.
func NewWorkflowEvent(cluster string, deleted bool, w Workflow, now time.Time) (event.Event, error) {
	if err := w.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("workflow %s/%s: %w", w.Namespace, w.Name, err)
	}
	typ, id := TypeWorkflowChanged, "workflow."+w.UID+"."+w.Ordering.String()
	if deleted {
		typ, id = TypeWorkflowDeleted, id+".deleted"
	}
	return newEvent(cluster, typ, id, Subject(w.Namespace, w.App), w.Ordering, w, now)
}

// NewAppSnapshotEvent is the event carrying one app's snapshot of one kind.
func NewAppSnapshotEvent(cluster string, s AppSnapshot, now time.Time) (event.Event, error) {
	if err := s.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("snapshot of %s/%s: %w", s.Namespace, s.App, err)
	}
	id := "snapshot." + s.Kind + "." + s.Revision.String() + "." + Subject(s.Namespace, s.App)
	return newEvent(cluster, TypeAppSnapshot, id, Subject(s.Namespace, s.App), s.Revision, s, now)
}

// NewClusterSnapshotEvent is the event listing the apps of a kind.
func NewClusterSnapshotEvent(cluster string, s ClusterSnapshot, now time.Time) (event.Event, error) {
	if err := s.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("cluster snapshot: %w", err)
	}
	if s.Apps == nil {
		s.Apps = []AppRef{}
	}
	id := "snapshot." + s.Kind + "." + s.Revision.String()
	return newEvent(cluster, TypeClusterSnapshot, id, "", s.Revision, s, now)
}

// NewWorkflowSucceededEvent is the event saying that a workflow of an app has just
// succeeded. Its id is the same for every send: one workflow succeeds once.
func NewWorkflowSucceededEvent(cluster string, w Workflow, now time.Time) (event.Event, error) {
	if err := w.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("workflow %s/%s: %w", w.Namespace, w.Name, err)
	}
	if w.Phase != "Succeeded" {
		return event.Event{}, fmt.Errorf("workflow %s/%s is %s, not Succeeded", w.Namespace, w.Name, w.Phase)
	}
	return newEvent(cluster, TypeWorkflowSucceeded, "workflow."+w.UID+".succeeded", Subject(w.Namespace, w.App), w.Ordering, w, now)
}
