package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// startWatchTopic runs a watch topic of f until the returned stop is called; stop waits
// for Run to return.
func startWatchTopic(t *testing.T, f *fakeUpstream) (*watchTopic, *hub.Client, *hub.Metrics, func()) {
	t.Helper()
	loop := testLoop(f)
	topic := newWatchTopic(loop, stripMeta, 10)
	c := hub.NewClient(100, nil)
	if err := topic.Subscribe(t.Context(), c.NewSubscription(""), Join{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		topic.Run(ctx)
	}()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(cancel)
	return topic, c, loop.metrics, stop
}

func requests(m *hub.Metrics, verb string) float64 {
	return testutil.ToFloat64(m.UpstreamRequests.WithLabelValues("pods", verb))
}

func TestListWatchCountsUpstreamRequests(t *testing.T) {
	f := newFakeUpstream()
	_, c, m, stop := startWatchTopic(t, f)
	w := waitWatch(t, f)
	recv(t, c) // snapshot
	w.Add(pod("a", 101))
	recv(t, c)
	if l, wa, open := requests(m, "list"), requests(m, "watch"), testutil.ToFloat64(m.Upstreams.WithLabelValues("pods")); l != 1 || wa != 1 || open != 1 {
		t.Fatalf("lists %v, watches %v, open %v; want 1 each", l, wa, open)
	}
	// A watch ending resumes with a watch, not a list.
	w.Stop()
	w = waitWatch(t, f)
	w.Add(pod("b", 102))
	recv(t, c)
	if l, wa := requests(m, "list"), requests(m, "watch"); l != 1 || wa != 2 {
		t.Fatalf("after the watch ended: lists %v, watches %v; want 1 and 2", l, wa)
	}
	stop()
	if open := testutil.ToFloat64(m.Upstreams.WithLabelValues("pods")); open != 0 {
		t.Fatalf("open watches after Run returned = %v, want 0", open)
	}
}

func errorPayload(t *testing.T, m *hub.Message) api.ErrorPayload {
	t.Helper()
	if m.Events[0].Name != api.EventError {
		t.Fatalf("got %v, want an error event", eventNames(m))
	}
	var p api.ErrorPayload
	if err := json.Unmarshal(m.Events[0].Data[len("data: "):], &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// The Reflector keeps some failures to itself (it retries a refused watch, and ends a
// watch with an error in its stream quietly): subscribers still hear of them.
func TestListWatchReportsWatchFailures(t *testing.T) {
	f := newFakeUpstream()
	f.pods = []corev1.Pod{*pod("a", 90)}
	_, c, m, _ := startWatchTopic(t, f)
	w := waitWatch(t, f)
	recv(t, c) // snapshot

	// An error in the watch's stream.
	w.Error(&apierrors.NewInternalError(errors.New("etcd timed out")).ErrStatus)
	if p := errorPayload(t, recv(t, c)); p.Status != 500 || !p.Retrying {
		t.Fatalf("error payload %+v", p)
	}
	// The Reflector lists again; nothing changed, so subscribers get nothing until the
	// next change.
	w = waitWatch(t, f)
	w.Add(pod("b", 101))
	if got := eventNames(recv(t, c)); len(got) != 1 || got[0] != "added@101" {
		t.Fatalf("after the broken watch: %v, want added@101 alone", got)
	}

	// The watch cannot be opened.
	f.mu.Lock()
	f.pods = append(f.pods, *pod("b", 101))
	f.watchErr = apierrors.NewServiceUnavailable("down")
	f.mu.Unlock()
	w.Stop()
	if p := errorPayload(t, recv(t, c)); p.Status != 503 || !p.Retrying {
		t.Fatalf("error payload %+v", p)
	}
	f.mu.Lock()
	f.watchErr = nil
	f.mu.Unlock()
	w = waitWatch(t, f)
	w.Modify(pod("b", 102))
	// Until then the Reflector lists between attempts, and each list that works ends the
	// failure: the next failed attempt is news again.
	for {
		m := recv(t, c)
		if m.Events[0].Name == api.EventError {
			continue
		}
		if got := eventNames(m); got[0] != "modified@102" {
			t.Fatalf("after recovery: %v", got)
		}
		break
	}
	if n := testutil.ToFloat64(m.UpstreamErrors.WithLabelValues("pods")); n < 2 {
		t.Fatalf("upstream errors = %v, want at least 2", n)
	}
}

// A relist that finds what the topic holds changes nothing for subscribers: no full
// state sent again, and resuming from before it is still exact. (The old loop sent a
// relist and forgot its ring after every 410.)
func TestUnchangedRelistKeepsResumeExact(t *testing.T) {
	f := newFakeUpstream()
	topic, c, _, _ := startWatchTopic(t, f)
	w := waitWatch(t, f)
	recv(t, c) // snapshot@100
	w.Add(pod("a", 101))
	w.Add(pod("b", 102))
	recv(t, c)
	recv(t, c)

	f.mu.Lock()
	f.pods = []corev1.Pod{*pod("a", 101), *pod("b", 102)}
	f.rv = 150
	f.mu.Unlock()
	w.Error(&apierrors.NewResourceExpired("too old resource version").ErrStatus)
	w = waitWatch(t, f)
	noMessage(t, c)

	late := hub.NewClient(100, nil)
	_ = topic.Subscribe(t.Context(), late.NewSubscription(""), Join{Resume: api.Resume{Set: true, RV: 101, HasRV: true}})
	if got := eventNames(recv(t, late)); len(got) != 1 || got[0] != "added@102" {
		t.Fatalf("resume from 101 after an unchanged relist: %v, want added@102", got)
	}
	// Changes go on from the relist's version.
	w.Delete(pod("a", 151))
	for _, cl := range []*hub.Client{c, late} {
		if got := eventNames(recv(t, cl)); got[0] != "deleted@151" {
			t.Fatalf("got %v", got)
		}
	}
	f.mu.Lock()
	lastRV := f.watchRVs[len(f.watchRVs)-1]
	f.mu.Unlock()
	if lastRV != "150" {
		t.Fatalf("watch after the relist from %q, want 150", lastRV)
	}
}

// The upstream store refuses what is not an API object rather than panic.
func TestReflectorStoreRefusesOtherThings(t *testing.T) {
	topic := newWatchTopic(nil, stripMeta, 10)
	s := &reflectorStore{h: topic, kind: "pods", metrics: hub.NewMetrics(nil)}
	if err := s.Add("not an object"); err == nil {
		t.Fatal("a string was taken for an object")
	}
	if err := s.Replace([]any{schema.GroupVersion{}}, "1"); err == nil {
		t.Fatal("a GroupVersion was taken for an object")
	}
	s.stop()
	if err := s.Replace(nil, "2"); err != nil || topic.synced {
		t.Fatalf("after stop: err %v, synced %v; want nothing handed over", err, topic.synced)
	}
}
