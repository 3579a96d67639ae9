package upstream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// ApplicationsResource is Argo CD's Application resource. The router reads Applications
// unstructured: the main module does not import Argo CD (its Kubernetes libraries are
// older).
var ApplicationsResource = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// applicationReplay is how many changes an application topic keeps for resuming. Each
// is a whole view, so a subscriber further behind loses nothing but the steps between:
// it gets the current view.
const applicationReplay = 64

// ApplicationView is what the application stream shows of an Argo CD Application. Its
// fields are named as in the Application's status, so Argo CD's documentation applies.
type ApplicationView struct {
	// Name is the Application's name in Argo CD's namespace: "<namespace>.<app>".
	Name string `json:"name"`
	// Deleting says the Application is being deleted (Argo CD deletes its objects first).
	Deleting bool              `json:"deleting,omitempty"`
	Sync     ApplicationSync   `json:"sync"`
	Health   ApplicationHealth `json:"health"`
	// OperationState is the sync in progress or the last one; absent before the first.
	OperationState *ApplicationOperation  `json:"operationState,omitempty"`
	Conditions     []ApplicationCondition `json:"conditions"`
	// Resources are the objects the Application manages, sorted by group, kind,
	// namespace and name.
	Resources []ApplicationResource `json:"resources"`
}

// ApplicationSync is the sync status: Synced, OutOfSync or Unknown, at the revision the
// live state was compared with.
type ApplicationSync struct {
	Status   string `json:"status"`
	Revision string `json:"revision,omitempty"`
	// Revisions are a multi-source Application's revisions.
	Revisions []string `json:"revisions,omitempty"`
}

// ApplicationHealth is a health status (Healthy, Progressing, Degraded, Suspended,
// Missing, Unknown) and what Argo CD says of it.
type ApplicationHealth struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// ApplicationOperation is a sync operation's state.
type ApplicationOperation struct {
	Phase      string `json:"phase"`
	Message    string `json:"message,omitempty"`
	StartedAt  string `json:"startedAt,omitempty"`
	FinishedAt string `json:"finishedAt,omitempty"`
}

// ApplicationCondition is a condition Argo CD reports (errors and warnings).
type ApplicationCondition struct {
	Type    string `json:"type"`
	Message string `json:"message,omitempty"`
}

// ApplicationResource is one object an Application manages.
type ApplicationResource struct {
	Group     string `json:"group,omitempty"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Status is the object's sync status.
	Status string `json:"status,omitempty"`
	// Health is absent for kinds Argo CD has no health for (a ConfigMap).
	Health *ApplicationHealth `json:"health,omitempty"`
}

// ViewOf reads the view of an Application. It is lenient: a field that is missing or not
// of the expected type reads as empty, so that whatever the Application holds, the
// stream shows what it can.
func ViewOf(obj map[string]any) ApplicationView {
	v := ApplicationView{
		Name:       text(obj, "metadata", "name"),
		Deleting:   text(obj, "metadata", "deletionTimestamp") != "",
		Sync:       ApplicationSync{Status: text(obj, "status", "sync", "status"), Revision: text(obj, "status", "sync", "revision")},
		Health:     healthOf(field(obj, "status", "health")),
		Conditions: []ApplicationCondition{},
		Resources:  []ApplicationResource{},
	}
	for _, r := range list(obj, "status", "sync", "revisions") {
		if s, ok := r.(string); ok {
			v.Sync.Revisions = append(v.Sync.Revisions, s)
		}
	}
	if op, ok := field(obj, "status", "operationState").(map[string]any); ok {
		v.OperationState = &ApplicationOperation{
			Phase: text(op, "phase"), Message: text(op, "message"),
			StartedAt: text(op, "startedAt"), FinishedAt: text(op, "finishedAt"),
		}
	}
	for _, c := range list(obj, "status", "conditions") {
		if m, ok := c.(map[string]any); ok {
			v.Conditions = append(v.Conditions, ApplicationCondition{Type: text(m, "type"), Message: text(m, "message")})
		}
	}
	// Sorted, so that the same conditions and resources always read the same.
	slices.SortFunc(v.Conditions, func(a, b ApplicationCondition) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Message, b.Message))
	})
	for _, r := range list(obj, "status", "resources") {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		res := ApplicationResource{
			Group: text(m, "group"), Kind: text(m, "kind"), Namespace: text(m, "namespace"),
			Name: text(m, "name"), Status: text(m, "status"),
		}
		if h, ok := m["health"].(map[string]any); ok {
			health := healthOf(h)
			res.Health = &health
		}
		v.Resources = append(v.Resources, res)
	}
	slices.SortStableFunc(v.Resources, func(a, b ApplicationResource) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return v
}

func healthOf(v any) ApplicationHealth {
	m, _ := v.(map[string]any)
	return ApplicationHealth{Status: text(m, "status"), Message: text(m, "message")}
}

// field is the value at path in obj (nil when absent). Values are not copied.
func field(obj map[string]any, path ...string) any {
	v, _, err := unstructured.NestedFieldNoCopy(obj, path...)
	if err != nil {
		return nil
	}
	return v
}

func text(obj map[string]any, path ...string) string {
	s, _ := field(obj, path...).(string)
	return s
}

func list(obj map[string]any, path ...string) []any {
	l, _ := field(obj, path...).([]any)
	return l
}

// applicationPayload is the data of the application stream's events.
type applicationPayload struct {
	Type string `json:"type"`
	// Application is the view, null when there is no Application.
	Application json.RawMessage `json:"application"`
}

// applicationTopic is one app's Argo CD Application, read with the router's identity from
// one watch of that name in Argo CD's namespace. The first message is the view as it
// is (null when there is no Application yet: the stream follows on, so a portal can
// open it before the first deploy), then each change of the view: `application`, or
// `deleted`. Argo CD rewrites the status every few seconds (reconciledAt, observedAt)
// without a change a portal shows: those changes send nothing. Ids are
// resourceVersions, so that a returning subscriber gets exactly the views it missed.
type applicationTopic struct {
	loop *listWatch
	name string

	changeFeed
	synced bool
	view   []byte       // the encoded view; nil while there is no Application
	state  *hub.Message // the view as a message, until it or the log restarts
}

func newApplicationTopic(loop *listWatch, name string) *applicationTopic {
	return &applicationTopic{loop: loop, name: name, changeFeed: changeFeed{log: newChangeLog(applicationReplay)}}
}

// Run follows the Application until ctx ends.
func (t *applicationTopic) Run(ctx context.Context) { t.loop.run(ctx, t) }

// own returns obj when it is the topic's Application (the watch's selectors should let
// no other through).
func (t *applicationTopic) own(obj runtime.Object) (*unstructured.Unstructured, bool) {
	u, ok := obj.(*unstructured.Unstructured)
	return u, ok && u.GetName() == t.name
}

// Subscribe implements Topic.
func (t *applicationTopic) Subscribe(_ context.Context, s *hub.Subscription, j Join) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var msg *hub.Message
	if t.synced { // else the first list is on its way: its state goes to everyone waiting
		var ok bool
		if msg, ok = t.log.since(j.Resume); !ok {
			msg = t.stateLocked()
		}
	}
	t.joinLocked(s, msg)
	return nil
}

func (t *applicationTopic) stateLocked() *hub.Message {
	if t.state == nil {
		t.state = hub.NewMessage(false, hub.NewEvent(api.EventApplication, t.log.rv,
			api.Marshal(applicationPayload{Type: api.EventApplication, Application: t.view})))
	}
	return t.state
}

func (t *applicationTopic) replace(items []runtime.Object, rv string, relist bool) {
	var view []byte
	for _, obj := range items {
		if u, ok := t.own(obj); ok {
			view = api.Marshal(ViewOf(u.Object))
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log.restart(rv)
	t.state = nil
	// The first list goes to everyone; a relist only when the view changed meanwhile.
	changed := !t.synced || !bytes.Equal(view, t.view)
	t.synced, t.view = true, view
	if changed {
		t.fan.Broadcast(t.stateLocked())
	}
}

func (t *applicationTopic) event(typ watch.EventType, obj runtime.Object, rv string) {
	u, ok := t.own(obj)
	if !ok {
		t.progress(rv)
		return
	}
	var view []byte
	if typ != watch.Deleted {
		view = api.Marshal(ViewOf(u.Object))
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if bytes.Equal(view, t.view) {
		t.log.skip(rv)
		return
	}
	name := api.EventApplication
	if view == nil {
		name = api.EventDeleted
	}
	msg := hub.NewMessage(false, hub.NewEvent(name, rv, api.Marshal(applicationPayload{Type: name, Application: view})))
	t.view, t.state = view, nil
	t.log.record(rv, msg)
	t.fan.Broadcast(msg)
}
