package upstream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// applicationJSON is an Application as Argo CD 2.14 writes it, mid-sync.
const applicationJSON = `{
  "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
  "metadata": {"name": "shop.web", "namespace": "argocd", "resourceVersion": "7",
    "labels": {"dwp.io/app-namespace": "shop", "dwp.io/app": "web"}},
  "spec": {"project": "dwp", "source": {"repoURL": "https://git.example/gitops.git", "path": "apps/shop/web"}},
  "status": {
    "reconciledAt": "2026-01-02T03:04:05Z",
    "sync": {"status": "OutOfSync", "revision": "abc123", "comparedTo": {"source": {"path": "apps/shop/web"}}},
    "health": {"status": "Progressing", "message": "waiting for rollout"},
    "operationState": {"phase": "Running", "message": "waiting for healthy state of apps/Deployment/web",
      "startedAt": "2026-01-02T03:04:00Z", "operation": {"sync": {"revision": "abc123"}}},
    "conditions": [{"type": "SyncError", "message": "b", "lastTransitionTime": "2026-01-02T03:04:05Z"},
      {"type": "OrphanedResourceWarning", "message": "a"}],
    "resources": [
      {"group": "apps", "version": "v1", "kind": "Deployment", "namespace": "shop", "name": "web",
        "status": "Synced", "health": {"status": "Progressing", "message": "1 of 2 updated"}},
      {"version": "v1", "kind": "Service", "namespace": "shop", "name": "web", "status": "Synced",
        "health": {"status": "Healthy"}},
      {"version": "v1", "kind": "ConfigMap", "namespace": "shop", "name": "web-config", "status": "OutOfSync"}
    ]
  }
}`

func application(t testing.TB, edit func(obj map[string]any)) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(applicationJSON), &u.Object); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(u.Object)
	}
	return u
}

func status(obj map[string]any) map[string]any { return obj["status"].(map[string]any) }

func TestViewOf(t *testing.T) {
	full := ApplicationView{
		Name:   "shop.web",
		Sync:   ApplicationSync{Status: "OutOfSync", Revision: "abc123"},
		Health: ApplicationHealth{Status: "Progressing", Message: "waiting for rollout"},
		OperationState: &ApplicationOperation{Phase: "Running", Message: "waiting for healthy state of apps/Deployment/web",
			StartedAt: "2026-01-02T03:04:00Z"},
		Conditions: []ApplicationCondition{{Type: "OrphanedResourceWarning", Message: "a"}, {Type: "SyncError", Message: "b"}},
		Resources: []ApplicationResource{
			{Kind: "ConfigMap", Namespace: "shop", Name: "web-config", Status: "OutOfSync"},
			{Kind: "Service", Namespace: "shop", Name: "web", Status: "Synced", Health: &ApplicationHealth{Status: "Healthy"}},
			{Group: "apps", Kind: "Deployment", Namespace: "shop", Name: "web", Status: "Synced",
				Health: &ApplicationHealth{Status: "Progressing", Message: "1 of 2 updated"}},
		},
	}
	tests := []struct {
		name string
		edit func(obj map[string]any)
		want func(v *ApplicationView)
	}{
		{name: "as Argo CD writes it", want: func(v *ApplicationView) {}},
		{name: "no status yet", edit: func(obj map[string]any) { delete(obj, "status") }, want: func(v *ApplicationView) {
			*v = ApplicationView{Name: "shop.web", Conditions: []ApplicationCondition{}, Resources: []ApplicationResource{}}
		}},
		{name: "being deleted", edit: func(obj map[string]any) {
			obj["metadata"].(map[string]any)["deletionTimestamp"] = "2026-01-02T03:05:00Z"
		}, want: func(v *ApplicationView) { v.Deleting = true }},
		{name: "finished operation", edit: func(obj map[string]any) {
			op := status(obj)["operationState"].(map[string]any)
			op["phase"], op["message"], op["finishedAt"] = "Succeeded", "successfully synced", "2026-01-02T03:04:30Z"
		}, want: func(v *ApplicationView) {
			v.OperationState = &ApplicationOperation{Phase: "Succeeded", Message: "successfully synced",
				StartedAt: "2026-01-02T03:04:00Z", FinishedAt: "2026-01-02T03:04:30Z"}
		}},
		{name: "multi-source revisions", edit: func(obj map[string]any) {
			status(obj)["sync"] = map[string]any{"status": "Synced", "revisions": []any{"r1", 2, "r2"}}
		}, want: func(v *ApplicationView) { v.Sync = ApplicationSync{Status: "Synced", Revisions: []string{"r1", "r2"}} }},
		{name: "fields of the wrong type read as empty", edit: func(obj map[string]any) {
			s := status(obj)
			s["health"] = "Healthy"
			s["operationState"] = []any{}
			s["conditions"] = map[string]any{"type": "x"}
			s["resources"] = []any{"x", map[string]any{"kind": 3, "name": "n", "health": "Healthy"}}
		}, want: func(v *ApplicationView) {
			v.Health, v.OperationState, v.Conditions = ApplicationHealth{}, nil, []ApplicationCondition{}
			v.Resources = []ApplicationResource{{Name: "n"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, op := full, *full.OperationState
			want.OperationState = &op
			tt.want(&want)
			got := ViewOf(application(t, tt.edit).Object)
			if g, w := api.Marshal(got), api.Marshal(want); !bytes.Equal(g, w) {
				t.Fatalf("view\n%s\nwant\n%s", g, w)
			}
		})
	}
}

// The stream sends a change only when the view changes: what Argo CD rewrites on every
// reconciliation must not show in it, and what a portal shows must.
func TestViewChanges(t *testing.T) {
	base := api.Marshal(ViewOf(application(t, nil).Object))
	tests := []struct {
		name    string
		edit    func(obj map[string]any)
		changed bool
	}{
		{"reconciledAt", func(obj map[string]any) { status(obj)["reconciledAt"] = "2026-01-02T03:09:05Z" }, false},
		{"observedAt and resourceVersion", func(obj map[string]any) {
			status(obj)["observedAt"] = "2026-01-02T03:09:05Z"
			obj["metadata"].(map[string]any)["resourceVersion"] = "8"
		}, false},
		{"a condition's time", func(obj map[string]any) {
			status(obj)["conditions"].([]any)[0].(map[string]any)["lastTransitionTime"] = "2026-01-02T03:09:05Z"
		}, false},
		{"the order of resources and conditions", func(obj map[string]any) {
			slices.Reverse(status(obj)["resources"].([]any))
			slices.Reverse(status(obj)["conditions"].([]any))
		}, false},
		{"the spec", func(obj map[string]any) { obj["spec"].(map[string]any)["project"] = "other" }, false},
		{"sync status", func(obj map[string]any) { status(obj)["sync"].(map[string]any)["status"] = "Synced" }, true},
		{"synced revision", func(obj map[string]any) { status(obj)["sync"].(map[string]any)["revision"] = "def456" }, true},
		{"health message", func(obj map[string]any) { status(obj)["health"].(map[string]any)["message"] = "" }, true},
		{"operation phase", func(obj map[string]any) {
			status(obj)["operationState"].(map[string]any)["phase"] = "Succeeded"
		}, true},
		{"a resource's health", func(obj map[string]any) {
			status(obj)["resources"].([]any)[0].(map[string]any)["health"] = map[string]any{"status": "Healthy"}
		}, true},
		{"a resource gone", func(obj map[string]any) {
			s := status(obj)
			s["resources"] = s["resources"].([]any)[1:]
		}, true},
		{"a condition cleared", func(obj map[string]any) { delete(status(obj), "conditions") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := api.Marshal(ViewOf(application(t, tt.edit).Object))
			if changed := !bytes.Equal(got, base); changed != tt.changed {
				t.Fatalf("changed = %v, want %v\n%s\n%s", changed, tt.changed, base, got)
			}
		})
	}
}

// FuzzViewOf: whatever an Application holds, its view is read without panicking, the
// same every time, and sorted.
func FuzzViewOf(f *testing.F) {
	f.Add([]byte(applicationJSON))
	f.Add([]byte(`{"status":{"resources":[{"kind":"A","name":"b"},{"kind":"A","name":"a"},null,7]}}`))
	f.Add([]byte(`{"metadata":null,"status":{"sync":{"revisions":[1,"x",null]},"operationState":{"phase":1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var obj map[string]any
		if json.Unmarshal(data, &obj) != nil {
			return
		}
		v := ViewOf(obj)
		if b := api.Marshal(ViewOf(obj)); !bytes.Equal(b, api.Marshal(v)) {
			t.Fatalf("two readings differ: %s", b)
		}
		if v.Conditions == nil || v.Resources == nil {
			t.Fatal("conditions and resources encode as lists")
		}
		if !slices.IsSortedFunc(v.Resources, func(a, b ApplicationResource) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind),
				cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
		}) {
			t.Fatalf("resources not sorted: %+v", v.Resources)
		}
	})
}

// fakeApplications plays an API server holding at most one Application for a listWatch.
type fakeApplications struct {
	mu      sync.Mutex
	app     *unstructured.Unstructured
	rv      int
	watches chan *watch.FakeWatcher
}

func (f *fakeApplications) lw() *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationList"}}
			l.SetResourceVersion(strconv.Itoa(f.rv))
			if f.app != nil {
				l.Items = append(l.Items, *f.app.DeepCopy())
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w := watch.NewFake()
			f.watches <- w
			return w, nil
		},
	}
}

// next is the next watch the loop opens.
func (f *fakeApplications) next(t *testing.T) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("no watch opened")
		return nil
	}
}

func withRV(u *unstructured.Unstructured, rv int) *unstructured.Unstructured {
	u = u.DeepCopy()
	u.SetResourceVersion(strconv.Itoa(rv))
	return u
}

// payloadOf decodes the application stream's payload of the i-th event of m.
func payloadOf(t *testing.T, m *hub.Message, i int) (typ string, view *ApplicationView) {
	t.Helper()
	var p struct {
		Type        string           `json:"type"`
		Application *ApplicationView `json:"application"`
	}
	if err := json.Unmarshal(bytes.TrimPrefix(m.Events[i].Data, []byte("data: ")), &p); err != nil {
		t.Fatalf("payload %q: %v", m.Events[i].Data, err)
	}
	return p.Type, p.Application
}

func TestApplicationTopic(t *testing.T) {
	f := &fakeApplications{rv: 100, watches: make(chan *watch.FakeWatcher, 10)}
	loop := &listWatch{kind: "application", lw: f.lw(), metrics: hub.NewMetrics(nil), log: slog.New(slog.DiscardHandler),
		minBackoff: time.Millisecond, maxBackoff: 5 * time.Millisecond}
	topic := newApplicationTopic(loop, "shop.web")
	early := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), early.NewSubscription(""), Join{})
	go topic.Run(t.Context())

	// Before the first deploy: the stream says there is none, and follows on.
	m := recv(t, early)
	if got := eventNames(m); len(got) != 1 || got[0] != "application@100" {
		t.Fatalf("first message %v, want the state at 100", got)
	}
	if typ, v := payloadOf(t, m, 0); typ != api.EventApplication || v != nil {
		t.Fatalf("first payload %s %+v, want no Application", typ, v)
	}
	w := f.next(t)

	app := application(t, nil)
	w.Add(withRV(app, 101))
	m = recv(t, early)
	if typ, v := payloadOf(t, m, 0); m.Events[0].ID != "101" || typ != api.EventApplication || v == nil || v.Health.Status != "Progressing" {
		t.Fatalf("created: %v %s %+v", eventNames(m), typ, v)
	}
	// Argo CD's reconciliation alone sends nothing.
	status(app.Object)["reconciledAt"] = "2026-01-02T03:09:05Z"
	w.Modify(withRV(app, 102))
	noMessage(t, early)
	status(app.Object)["health"] = map[string]any{"status": "Healthy"}
	w.Modify(withRV(app, 103))
	if m = recv(t, early); m.Events[0].ID != "103" {
		t.Fatalf("health change: %v", eventNames(m))
	}
	if _, v := payloadOf(t, m, 0); v.Health != (ApplicationHealth{Status: "Healthy"}) {
		t.Fatalf("health change: %+v", v.Health)
	}
	w.Action(watch.Bookmark, withRV(app, 110))

	join := func(rv uint64) *hub.Client {
		c := hub.NewClient(100, nil)
		_ = topic.Subscribe(t.Context(), c.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: rv, HasRV: true}})
		return c
	}
	// Resuming: exactly the views missed; nothing when up to date (whatever Argo CD
	// rewrote meanwhile); the current view when the log does not reach back that far.
	if got := eventNames(recv(t, join(101))); len(got) != 1 || got[0] != "application@103" {
		t.Fatalf("resume from 101: %v", got)
	}
	noMessage(t, join(103))
	noMessage(t, join(110))
	if got := eventNames(recv(t, join(99))); len(got) != 1 || got[0] != "application@110" {
		t.Fatalf("resume from before the list: %v, want the current view", got)
	}
	fresh := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), fresh.NewSubscription(""), Join{})
	if m := recv(t, fresh); m.Events[0].Name != api.EventApplication {
		t.Fatalf("new subscriber: %v", eventNames(m))
	} else if _, v := payloadOf(t, m, 0); v == nil || v.Health.Status != "Healthy" {
		t.Fatalf("new subscriber's view %+v", v)
	}

	w.Delete(withRV(app, 111))
	m = recv(t, early)
	if typ, v := payloadOf(t, m, 0); m.Events[0].Name != api.EventDeleted || m.Events[0].ID != "111" || typ != api.EventDeleted || v != nil {
		t.Fatalf("deletion: %v %s %+v", eventNames(m), typ, v)
	}
	recv(t, fresh)
	late := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), late.NewSubscription(""), Join{})
	if m := recv(t, late); m.Events[0].Name != api.EventApplication {
		t.Fatalf("after the deletion: %v", eventNames(m))
	} else if _, v := payloadOf(t, m, 0); v != nil {
		t.Fatalf("after the deletion: %+v, want none", v)
	}

	// A relist that finds the view as it was sends nothing; one that finds it changed
	// sends it.
	w.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired})
	w = f.next(t)
	noMessage(t, early)
	f.mu.Lock()
	f.app, f.rv = withRV(app, 120), 125
	f.mu.Unlock()
	w.Error(&metav1.Status{Status: metav1.StatusFailure, Code: 410, Reason: metav1.StatusReasonExpired})
	m = recv(t, early)
	if typ, v := payloadOf(t, m, 0); m.Events[0].ID != "125" || typ != api.EventApplication || v == nil {
		t.Fatalf("relist: %v %s %+v", eventNames(m), typ, v)
	}
}

// An Application other than the topic's (the field selector should keep them away)
// changes nothing.
func TestApplicationTopicIgnoresOthers(t *testing.T) {
	topic := newApplicationTopic(nil, "shop.web")
	c := hub.NewClient(100, nil)
	topic.replace(nil, "5", false)
	_ = topic.Subscribe(t.Context(), c.NewSubscription(""), Join{})
	recv(t, c)
	topic.event(watch.Added, application(t, nil), "6")
	if m := recv(t, c); m.Events[0].ID != "6" {
		t.Fatalf("got %v", eventNames(m))
	}
	other := application(t, nil)
	other.SetName("shop.db")
	status(other.Object)["health"] = map[string]any{"status": "Degraded"}
	for _, typ := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		topic.event(typ, other, "7")
	}
	noMessage(t, c)
}
