package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

func lines(from, n int) []logLine {
	var out []logLine
	for i := range n {
		ts := time.Unix(1000, int64(from+i)).UTC()
		out = append(out, logLine{pos: api.LogPos{Nanos: ts.UnixNano()}, time: ts, text: "l"})
	}
	return out
}

func ids(events []hub.Event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.ID)
	}
	return strings.Join(s, ",")
}

func TestPodLogSelection(t *testing.T) {
	topic := newPodLogTopic(nil, "ns", "p", "c", 5, hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{})
	topic.publish(lines(1, 3))
	topic.complete = true
	base := time.Unix(1000, 0).UnixNano()
	pos := func(i int) api.LogPos { return api.LogPos{Nanos: base + int64(i)} }

	tests := []struct {
		name        string
		w           wanted
		wantIDs     []int
		wantCovered bool
	}{
		{"everything", wanted{tail: -1}, []int{1, 2, 3}, true},
		{"tail 2", wanted{tail: 2}, []int{2, 3}, true},
		{"tail beyond a complete log", wanted{tail: 10}, []int{1, 2, 3}, true},
		{"after 1", wanted{after: pos(1), hasAfter: true, tail: -1}, []int{2, 3}, true},
		{"after the last", wanted{after: pos(3), hasAfter: true, tail: -1}, nil, true},
	}
	check := func(t *testing.T, w wanted, want []int, wantCovered bool) {
		t.Helper()
		events, covered := topic.selectLocked(w)
		var wantIDs []string
		for _, i := range want {
			wantIDs = append(wantIDs, pos(i).String())
		}
		if ids(events) != strings.Join(wantIDs, ",") || covered != wantCovered {
			t.Fatalf("got %s covered=%v, want %v covered=%v", ids(events), covered, wantIDs, wantCovered)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.w, tt.wantIDs, tt.wantCovered) })
	}

	// Four more lines push 1 and 2 out: the ring holds 3..7 and no longer the start.
	topic.publish(lines(4, 4))
	t.Run("after an evicted line", func(t *testing.T) {
		check(t, wanted{after: pos(1), hasAfter: true, tail: -1}, []int{3, 4, 5, 6, 7}, false)
	})
	t.Run("after the newest evicted line", func(t *testing.T) {
		check(t, wanted{after: pos(2), hasAfter: true, tail: -1}, []int{3, 4, 5, 6, 7}, true)
	})
	t.Run("tail longer than the ring", func(t *testing.T) {
		check(t, wanted{tail: 6}, []int{3, 4, 5, 6, 7}, false)
	})
	t.Run("sinceTime maps to after the instant before", func(t *testing.T) {
		since := time.Unix(1000, 5)
		w := linesWanted(Join{Spec: api.Spec{SinceTime: &since}})
		check(t, w, []int{5, 6, 7}, true)
	})
}

func TestPodLogSubscribeDeliversLinesThenEnd(t *testing.T) {
	topic := newPodLogTopic(nil, "ns", "p", "c", 10, hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{})
	topic.publish(lines(1, 2))
	topic.complete = true
	topic.markReady()
	live := hub.NewClient(10, nil)
	if err := topic.Subscribe(context.Background(), live.NewSubscription(""), Join{Spec: api.Spec{Follow: true}}); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, live); len(m.Events) != 2 {
		t.Fatalf("replay %d events", len(m.Events))
	}
	topic.publish(lines(3, 1))
	if m := recv(t, live); ids(m.Events) != (api.LogPos{Nanos: time.Unix(1000, 3).UnixNano()}).String() {
		t.Fatalf("live line %s", ids(m.Events))
	}
	topic.finish(hub.Event{}, "terminated")
	if m := recv(t, live); !m.End || m.Events[0].ID != api.EndID {
		t.Fatalf("end message %+v", m)
	}
	// After the end, a newcomer gets every line and the end.
	late := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), late.NewSubscription(""), Join{Spec: api.Spec{Follow: true}})
	m := recv(t, late)
	if len(m.Events) != 4 || !m.End || m.Events[3].Name != api.EventEnd {
		t.Fatalf("late joiner got %d events end=%v", len(m.Events), m.End)
	}
	// follow=false: the lines, then an end, and no attachment.
	once := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), once.NewSubscription(""), Join{Spec: api.Spec{Follow: false}})
	if m := recv(t, once); !m.End {
		t.Fatal("no end for follow=false")
	}
}

func TestWorkflowLogPositionsOnlyGrow(t *testing.T) {
	topic := newWorkflowLogTopic(nil, nil, "ns", "wf", "main", workflowLogOptions{replay: 100}, hub.NewMetrics(nil), slog.New(slog.DiscardHandler))
	c := hub.NewClient(10, nil)
	close(topic.ready)
	_ = topic.Subscribe(context.Background(), c.NewSubscription(""), Join{})
	t0 := time.Unix(2000, 0)
	mk := func(d time.Duration, text string) logLine { return logLine{time: t0.Add(d), text: text} }
	// A late line of another pod (older than what was sent) and two lines at one instant.
	topic.publish([]logLine{mk(10, "a"), mk(20, "b"), mk(20, "c")}, []podLines{{pod: "p1"}, {pod: "p2"}, {pod: "p1"}})
	topic.publish([]logLine{mk(15, "late")}, []podLines{{pod: "p3", node: "step-3"}})
	var got []string
	for range 2 {
		for _, e := range recv(t, c).Events {
			got = append(got, e.ID)
			var p logLinePayload
			_ = json.Unmarshal(e.Data[len("data: "):], &p)
			if p.Line == "late" && (p.Pod != "p3" || p.Node != "step-3" || p.Time != t0.Add(15).UTC().Format(time.RFC3339Nano)) {
				t.Fatalf("late line payload %+v keeps its own time, pod and node", p)
			}
		}
	}
	b := t0.UnixNano()
	want := []api.LogPos{{Nanos: b + 10, Rank: 0}, {Nanos: b + 20, Rank: 0}, {Nanos: b + 20, Rank: 1}, {Nanos: b + 20, Rank: 2}}
	for i, w := range want {
		if got[i] != w.String() {
			t.Fatalf("ids %v, want %v", got, want)
		}
	}
	// Resuming after the second id sends the rest exactly.
	r := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), r.NewSubscription(""), Join{Resume: api.Resume{Set: true, Log: want[1]}})
	if m := recv(t, r); ids(m.Events) != want[2].String()+","+want[3].String() {
		t.Fatalf("resume got %s", ids(m.Events))
	}
}

func TestMetricsTopicFiltersAndSkipsRepeats(t *testing.T) {
	sel, _ := labels.Parse("app=web")
	topic := newMetricsTopic(sel, false, nil)
	c := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), c.NewSubscription(""), Join{})
	usage := func(cpu string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("64Mi")}
	}
	list := func(cpu string) *metricsv1beta1.PodMetricsList {
		return &metricsv1beta1.PodMetricsList{Items: []metricsv1beta1.PodMetrics{
			{ObjectMeta: metav1.ObjectMeta{Name: "web-2", Labels: map[string]string{"app": "web"}}, Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: usage(cpu)}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "db-1", Labels: map[string]string{"app": "db"}}, Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: usage("1")}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}}, Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: usage("100m")}}},
		}}
	}
	topic.update(list("250m"), time.Unix(1, 0), nil)
	m := recv(t, c)
	var p metricsPayload
	if err := json.Unmarshal(m.Events[0].Data[len("data: "):], &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Pods) != 2 || p.Pods[0].Name != "web-1" || p.Total.CPUMillis != 350 || p.Total.MemoryBytes != 2*64<<20 {
		t.Fatalf("payload %+v", p)
	}
	topic.update(list("250m"), time.Unix(2, 0), nil)
	noMessage(t, c)
	topic.update(list("300m"), time.Unix(3, 0), nil)
	if m := recv(t, c); m.LastID() != "3000000000" {
		t.Fatalf("changed usage id %s", m.LastID())
	}
	// A newcomer gets the latest state at once, unless it already has it.
	late := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), late.NewSubscription(""), Join{})
	recv(t, late)
	same := hub.NewClient(10, nil)
	_ = topic.Subscribe(context.Background(), same.NewSubscription(""), Join{Resume: api.Resume{Set: true, ID: "3000000000"}})
	noMessage(t, same)
	topic.update(nil, time.Unix(4, 0), errors.New("metrics API unavailable"))
	if m := recv(t, c); m.Events[0].Name != api.EventError {
		t.Fatalf("failure got %v", eventNames(m))
	}
}

// fakeApps is an AppsSource fed by the test.
type fakeApps struct {
	mu       sync.Mutex
	state    map[string]string
	changes  chan AppChange
	fail     chan error
	watching chan struct{}
	// snapErrs are what the next snapshots fail with.
	snapErrs []error
}

func (f *fakeApps) Snapshot(ctx context.Context, cluster, ns string) ([]AppChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.snapErrs) > 0 {
		err := f.snapErrs[0]
		f.snapErrs = f.snapErrs[1:]
		return nil, err
	}
	var out []AppChange
	for k, v := range f.state {
		out = append(out, AppChange{App: k, Summary: json.RawMessage(v)})
	}
	return out, nil
}

func (f *fakeApps) Watch(ctx context.Context, cluster, ns string, ready func(), onChange func(AppChange)) error {
	ready()
	f.watching <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-f.fail:
			return err
		case c := <-f.changes:
			onChange(c)
		}
	}
}

func TestAppsTopic(t *testing.T) {
	src := &fakeApps{state: map[string]string{"web": `{"run":"Running"}`}, changes: make(chan AppChange), fail: make(chan error), watching: make(chan struct{}, 5)}
	topic := newAppsTopic(src, "local", "shop", hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{time.Millisecond, time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := hub.NewClient(10, nil)
	_ = topic.Subscribe(ctx, c.NewSubscription(""), Join{})
	go topic.Run(ctx)
	<-src.watching
	snap := recv(t, c)
	if snap.Events[0].Name != api.EventSnapshot || !strings.Contains(string(snap.Events[0].Data), `"app":"web"`) {
		t.Fatalf("snapshot %q", snap.Wire)
	}
	src.changes <- AppChange{App: "db", Summary: json.RawMessage(`{"run":"Degraded"}`)}
	first := recv(t, c)
	src.changes <- AppChange{App: "db", Summary: json.RawMessage(`{"run":"Degraded"}`)} // no change: nothing sent
	src.changes <- AppChange{App: "web"}                                                // deleted
	del := recv(t, c)
	if first.Events[0].Name != api.EventApp || del.Events[0].Name != api.EventDeleted {
		t.Fatalf("got %v then %v", eventNames(first), eventNames(del))
	}
	// Resume after the first change: only the deletion.
	r := hub.NewClient(10, nil)
	_ = topic.Subscribe(ctx, r.NewSubscription(""), Join{Resume: api.Resume{Set: true, ID: first.LastID()}})
	if m := recv(t, r); m.LastID() != del.LastID() || len(m.Events) != 1 {
		t.Fatalf("resume got %v", eventNames(m))
	}
	// The source fails: an error, then a relist once it is back.
	src.mu.Lock()
	src.state = map[string]string{"db": `{"run":"Running"}`}
	src.mu.Unlock()
	src.fail <- errors.New("redis: connection reset")
	if m := recv(t, c); m.Events[0].Name != api.EventError {
		t.Fatalf("failure got %v", eventNames(m))
	}
	<-src.watching
	if m := recv(t, c); m.Events[0].Name != api.EventRelist || !strings.Contains(string(m.Wire), `"Running"`) {
		t.Fatalf("after recovery %q", m.Wire)
	}
}

// A snapshot that fails is tried again, the subscription with it (the old loop kept
// following changes it could not show, with no snapshot, until the subscription broke).
func TestAppsTopicRetriesAFailedSnapshot(t *testing.T) {
	src := &fakeApps{
		state: map[string]string{"web": `{"run":"Running"}`}, changes: make(chan AppChange), fail: make(chan error),
		watching: make(chan struct{}, 5), snapErrs: []error{errors.New("redis: i/o timeout")},
	}
	topic := newAppsTopic(src, "local", "shop", hub.NewMetrics(nil), slog.New(slog.DiscardHandler), [2]time.Duration{time.Millisecond, time.Millisecond})
	c := hub.NewClient(10, nil)
	_ = topic.Subscribe(t.Context(), c.NewSubscription(""), Join{})
	go topic.Run(t.Context())
	if m := recv(t, c); m.Events[0].Name != api.EventError || !strings.Contains(string(m.Wire), `"retrying":true`) {
		t.Fatalf("failed snapshot: %q", m.Wire)
	}
	if m := recv(t, c); m.Events[0].Name != api.EventSnapshot || !strings.Contains(string(m.Wire), `"app":"web"`) {
		t.Fatalf("after the retry: %q", m.Wire)
	}
}
