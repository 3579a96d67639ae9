package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// fakeUpstream plays an API server for a listWatch: lists return the current pods, each
// watch is a FakeWatcher the test drives.
type fakeUpstream struct {
	mu       sync.Mutex
	pods     []corev1.Pod
	rv       int
	listErr  error
	watchErr error
	watches  chan *watch.FakeWatcher
	lists    int
	watchRVs []string
}

func newFakeUpstream() *fakeUpstream {
	return &fakeUpstream{watches: make(chan *watch.FakeWatcher, 10), rv: 100}
}

func (f *fakeUpstream) lw() *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.lists++
			if f.listErr != nil {
				return nil, f.listErr
			}
			l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: strconv.Itoa(f.rv)}}
			for _, p := range f.pods {
				l.Items = append(l.Items, *p.DeepCopy())
			}
			return l, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			f.mu.Lock()
			f.watchRVs = append(f.watchRVs, o.ResourceVersion)
			err := f.watchErr
			f.mu.Unlock()
			if err != nil {
				return nil, err
			}
			w := watch.NewFake()
			f.watches <- w
			return w, nil
		},
	}
}

func pod(name string, rv int) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: "ns", ResourceVersion: strconv.Itoa(rv),
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
}

func testLoop(f *fakeUpstream) *listWatch {
	return &listWatch{kind: "pods", lw: f.lw(), metrics: hub.NewMetrics(nil), log: slog.New(slog.DiscardHandler),
		minBackoff: time.Millisecond, maxBackoff: 5 * time.Millisecond}
}

// runWatchTopic runs a watch topic of f that keeps replay changes, with one subscriber
// that joined before the first list; both stop with the test.
func runWatchTopic(t *testing.T, f *fakeUpstream, replay int) (*watchTopic, *hub.Client) {
	t.Helper()
	topic := newWatchTopic(testLoop(f), stripMeta, replay)
	c := hub.NewClient(100, nil)
	if err := topic.Subscribe(t.Context(), c.NewSubscription(""), Join{}); err != nil {
		t.Fatal(err)
	}
	go topic.Run(t.Context())
	return topic, c
}

// recv returns the next message delivered to c.
func recv(t *testing.T, c *hub.Client) *hub.Message {
	t.Helper()
	d, ok := c.Next(5 * time.Second)
	if !ok {
		t.Fatal("no message")
	}
	return d.Msg
}

func noMessage(t *testing.T, c *hub.Client) {
	t.Helper()
	if d, ok := c.Next(50 * time.Millisecond); ok {
		t.Fatalf("unexpected message %q", d.Msg.Wire)
	}
}

func eventNames(m *hub.Message) []string {
	var out []string
	for _, e := range m.Events {
		out = append(out, e.Name+"@"+e.ID)
	}
	return out
}

func waitWatch(t *testing.T, f *fakeUpstream) *watch.FakeWatcher {
	t.Helper()
	select {
	case w := <-f.watches:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("no watch opened")
		return nil
	}
}

func TestWatchTopicSnapshotChangesAndResume(t *testing.T) {
	f := newFakeUpstream()
	f.pods = []corev1.Pod{*pod("a", 90)}
	topic, early := runWatchTopic(t, f, 3)
	w := waitWatch(t, f)
	snap := recv(t, early)
	if got := eventNames(snap); len(got) != 1 || got[0] != "snapshot@100" {
		t.Fatalf("first message %v, want the snapshot at 100", got)
	}
	var list struct {
		Items []corev1.Pod `json:"items"`
	}
	if err := json.Unmarshal(snap.Events[0].Data[len("data: "):], &list); err != nil || len(list.Items) != 1 || list.Items[0].ManagedFields != nil {
		t.Fatalf("snapshot items %+v (%v): want pod a without managed fields", list.Items, err)
	}

	for i, name := range []string{"b", "c", "d", "e"} {
		w.Add(pod(name, 101+i))
	}
	for i := range 4 {
		m := recv(t, early)
		if got := eventNames(m); got[0] != "added@"+strconv.Itoa(101+i) {
			t.Fatalf("event %d = %v", i, got)
		}
	}

	// Resuming within the ring (it holds 102..104) sends exactly what was missed.
	late := hub.NewClient(100, nil)
	if err := topic.Subscribe(t.Context(), late.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: 102, HasRV: true}}); err != nil {
		t.Fatal(err)
	}
	if got := eventNames(recv(t, late)); len(got) != 2 || got[0] != "added@103" || got[1] != "added@104" {
		t.Fatalf("replay %v, want 103 and 104", got)
	}
	// Up to date: nothing to send.
	current := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), current.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: 104, HasRV: true}})
	noMessage(t, current)
	// Too old for the ring: a snapshot of the whole state.
	old := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), old.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: 100, HasRV: true}})
	m := recv(t, old)
	if got := eventNames(m); got[0] != "snapshot@104" {
		t.Fatalf("too-old resume got %v, want a snapshot", got)
	}
	if err := json.Unmarshal(m.Events[0].Data[len("data: "):], &list); err != nil || len(list.Items) != 5 {
		t.Fatalf("snapshot has %d items, want 5", len(list.Items))
	}

	// A deletion reaches everyone and leaves the cache.
	w.Delete(pod("a", 105))
	for _, c := range []*hub.Client{early, late, current, old} {
		if got := eventNames(recv(t, c)); got[0] != "deleted@105" {
			t.Fatalf("got %v", got)
		}
	}
	if n := len(topic.objects()); n != 4 {
		t.Fatalf("cache holds %d objects, want 4", n)
	}
}

func TestWatchTopicResumesAndRelists(t *testing.T) {
	f := newFakeUpstream()
	topic, c := runWatchTopic(t, f, 10)
	w := waitWatch(t, f)
	recv(t, c) // snapshot

	w.Add(pod("a", 101))
	recv(t, c)
	// The watch ends (API server restart, timeout): it resumes from the last version,
	// without a list.
	w.Stop()
	w = waitWatch(t, f)
	f.mu.Lock()
	lists, lastRV := f.lists, f.watchRVs[len(f.watchRVs)-1]
	f.mu.Unlock()
	if lists != 1 || lastRV != "101" {
		t.Fatalf("after the watch ended: %d lists, watch from %q; want 1 list and a watch from 101", lists, lastRV)
	}
	w.Action(watch.Bookmark, pod("", 150))
	noMessage(t, c)

	// 410: the router lists again and says so.
	f.mu.Lock()
	f.pods = []corev1.Pod{*pod("a", 101), *pod("b", 160)}
	f.rv = 170
	f.mu.Unlock()
	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	m := recv(t, c)
	if got := eventNames(m); got[0] != "relist@170" {
		t.Fatalf("after 410: %v, want relist@170", got)
	}
	waitWatch(t, f)
	// Someone resuming from before the relist gets a snapshot.
	c2 := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), c2.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: 101, HasRV: true}})
	if got := eventNames(recv(t, c2)); got[0] != "snapshot@170" {
		t.Fatalf("got %v", got)
	}
}

func TestWatchTopicReportsFailures(t *testing.T) {
	f := newFakeUpstream()
	f.listErr = apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("no"))
	topic, c := runWatchTopic(t, f, 10)
	m := recv(t, c)
	if m.Events[0].Name != api.EventError {
		t.Fatalf("got %v, want an error event", eventNames(m))
	}
	var p api.ErrorPayload
	if err := json.Unmarshal(m.Events[0].Data[len("data: "):], &p); err != nil || p.Status != 403 || !p.Retrying {
		t.Fatalf("error payload %+v (%v)", p, err)
	}
	// A subscriber joining meanwhile learns of it too.
	c2 := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), c2.NewSubscription(""), Join{})
	if m := recv(t, c2); m.Events[0].Name != api.EventError {
		t.Fatalf("late joiner got %v", eventNames(m))
	}
	// Recovery: the snapshot follows.
	f.mu.Lock()
	f.listErr = nil
	f.mu.Unlock()
	if m := recv(t, c); m.Events[0].Name != api.EventSnapshot {
		t.Fatalf("after recovery: %v", eventNames(m))
	}
}
