package hub

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMessageWire(t *testing.T) {
	m := NewMessage(false, NewEvent("log", "1", []byte(`{"l":"a"}`)), NewEvent("log", "2", []byte(`{"l":"b"}`)))
	want := "event: log\nid: 1\ndata: {\"l\":\"a\"}\n\nevent: log\nid: 2\ndata: {\"l\":\"b\"}\n\n"
	if string(m.Wire) != want {
		t.Fatalf("wire = %q", m.Wire)
	}
	if m.LastID() != "2" {
		t.Fatalf("last id = %q", m.LastID())
	}
	if (&Message{}).LastID() != "" {
		t.Fatal("empty message has an id")
	}
}

func TestSlowClientIsDroppedOthersUnaffected(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	slow := NewClient(2, m)
	fast := NewClient(2, m)
	var f Fanout
	f.Add(slow.NewSubscription(""))
	fast1 := fast.NewSubscription("")
	f.Add(fast1)

	msg := NewMessage(false, NewEvent("x", "1", []byte("{}")))
	for i := range 5 {
		f.Broadcast(msg)
		// The fast client keeps up.
		ds := fast.Take(nil)
		if len(ds) != 1 || ds[0].Msg != msg || ds[0].Sub != fast1 {
			t.Fatalf("delivery %d: got %d deliveries, want the message once for the fast subscription", i, len(ds))
		}
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow client not closed")
	}
	if slow.Reason() != ReasonSlow {
		t.Fatalf("reason = %q", slow.Reason())
	}
	if fast.Reason() != "" {
		t.Fatalf("fast client closed: %q", fast.Reason())
	}
	if f.Len() != 1 {
		t.Fatalf("fan-out still holds %d subscriptions, want only the fast one", f.Len())
	}
	if got := testutil.ToFloat64(m.SlowClientsDropped); got != 1 {
		t.Fatalf("slow clients dropped = %v, want 1", got)
	}
	// A closed client's Close keeps the first reason.
	slow.Close(ReasonShutdown)
	if slow.Reason() != ReasonSlow {
		t.Fatalf("reason changed to %q", slow.Reason())
	}
}

type countingUpstream struct {
	running *atomic.Int64
	stopped chan struct{}
}

func (u *countingUpstream) Run(ctx context.Context) {
	u.running.Add(1)
	<-ctx.Done()
	u.running.Add(-1)
	close(u.stopped)
}

func TestRegistryRefCountsAndLingers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMetrics(prometheus.NewRegistry())
	r := NewRegistry[*countingUpstream](ctx, "test", 100*time.Millisecond, m)
	var running atomic.Int64
	created := 0
	create := func() *countingUpstream {
		created++
		return &countingUpstream{running: &running, stopped: make(chan struct{})}
	}

	a, releaseA := r.Acquire("k", create)
	b, releaseB := r.Acquire("k", create)
	if a != b || created != 1 {
		t.Fatalf("two acquires of one key made %d upstreams", created)
	}
	_, releaseOther := r.Acquire("other", create)
	releaseOther()
	releaseA()
	releaseA() // a second release of the same handle is ignored
	releaseB()
	if r.Len() != 2 {
		t.Fatalf("upstreams alive right after release = %d, want 2 (lingering)", r.Len())
	}
	// Re-acquiring within the linger reuses it.
	c, releaseC := r.Acquire("k", create)
	if c != a || created != 2 {
		t.Fatalf("re-acquire within linger created a new upstream")
	}
	releaseC()
	select {
	case <-a.stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream not stopped after the linger")
	}
	deadline := time.Now().Add(time.Second)
	for r.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.Len() != 0 {
		t.Fatalf("upstreams alive after linger = %d", r.Len())
	}
	if got := testutil.ToFloat64(m.Topics.WithLabelValues("test")); got != 0 {
		t.Fatalf("topics gauge = %v", got)
	}
	cancel()
	r.Wait()
	if running.Load() != 0 {
		t.Fatalf("%d upstreams still running", running.Load())
	}
}

func TestRegistryWithoutLingerStopsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := NewRegistry[*countingUpstream](ctx, "test", 0, nil)
	var running atomic.Int64
	u, release := r.Acquire("k", func() *countingUpstream {
		return &countingUpstream{running: &running, stopped: make(chan struct{})}
	})
	release()
	select {
	case <-u.stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("upstream not stopped")
	}
}

func TestUpstreamOpenGauge(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	done := m.UpstreamOpen("pod_log", "follow")
	done2 := m.UpstreamOpen("pod_log", "follow")
	if got := testutil.ToFloat64(m.Upstreams.WithLabelValues("pod_log")); got != 2 {
		t.Fatalf("open = %v", got)
	}
	done()
	done() // idempotent
	if got := testutil.ToFloat64(m.Upstreams.WithLabelValues("pod_log")); got != 1 {
		t.Fatalf("open after close = %v", got)
	}
	done2()
	if got := testutil.ToFloat64(m.UpstreamRequests.WithLabelValues("pod_log", "follow")); got != 2 {
		t.Fatalf("requests = %v", got)
	}
}
