package sink

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// fakeSender answers each event with the next result of its script (then 202), and
// records what it accepted.
type fakeSender struct {
	mu       sync.Mutex
	script   map[string][]int // event id → statuses to answer (0: unreachable)
	accepted []string
	attempts map[string]int
	gate     chan struct{} // when set, each Send waits for it
}

func newFakeSender() *fakeSender {
	return &fakeSender{script: map[string][]int{}, attempts: map[string]int{}}
}

func (f *fakeSender) Send(ctx context.Context, e event.Event) protocol.Result {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[e.ID()]++
	status := http.StatusAccepted
	if s := f.script[e.ID()]; len(s) > 0 {
		status, f.script[e.ID()] = s[0], s[1:]
	}
	if status == 0 {
		return errors.New("connection refused")
	}
	if status/100 == 2 {
		f.accepted = append(f.accepted, e.ID())
	}
	return cehttp.NewResult(status, "status %d", status)
}

func (f *fakeSender) acceptedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.accepted...)
}

func ev(id string) event.Event {
	e := event.New()
	e.SetID(id)
	e.SetType(events.TypePodChanged)
	e.SetSource("/test")
	return e
}

func run(t *testing.T, s *Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRetriesUntilDelivered(t *testing.T) {
	fs := newFakeSender()
	fs.script["a"] = []int{503, 0, 500}
	fs.script["b"] = []int{400}
	m := NewMetrics(prometheus.NewRegistry())
	s := New(fs, m, Options{RetryBaseDelay: time.Millisecond, RetryMaxDelay: 5 * time.Millisecond, Log: discard()})
	stop := run(t, s)
	defer stop()
	s.Enqueue("k/a", 1, ev("a"))
	s.Enqueue("k/b", 1, ev("b"))
	waitFor(t, "a delivered and b dropped", func() bool { return s.Pending() == 0 })
	if got := fs.acceptedIDs(); len(got) != 1 || got[0] != "a" {
		t.Errorf("accepted %v", got)
	}
	typ := events.TypePodChanged
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"sent", testutil.ToFloat64(m.sent.WithLabelValues(typ)), 1},
		{"undelivered nack", testutil.ToFloat64(m.undelivered.WithLabelValues(typ, "nack")), 2},
		{"undelivered unreachable", testutil.ToFloat64(m.undelivered.WithLabelValues(typ, "unreachable")), 1},
		{"undelivered rejected", testutil.ToFloat64(m.undelivered.WithLabelValues(typ, "rejected")), 1},
		{"dropped rejected", testutil.ToFloat64(m.dropped.WithLabelValues(typ, "rejected")), 1},
		{"pending", testutil.ToFloat64(m.pending), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if fs.attempts["b"] != 1 {
		t.Errorf("a rejected event was retried: %d attempts", fs.attempts["b"])
	}
}

func TestNewerStateReplacesWaitingOne(t *testing.T) {
	fs := newFakeSender()
	fs.gate = make(chan struct{})
	m := NewMetrics(prometheus.NewRegistry())
	s := New(fs, m, Options{Workers: 1, Log: discard()})
	stop := run(t, s)
	defer stop()
	s.Enqueue("pod/x", 10, ev("x10")) // taken by the worker, blocked in Send
	time.Sleep(20 * time.Millisecond)
	s.Enqueue("pod/x", 11, ev("x11"))
	s.Enqueue("pod/x", 13, ev("x13"))
	s.Enqueue("pod/x", 12, ev("x12")) // older than the waiting one: ignored
	close(fs.gate)
	waitFor(t, "all delivered", func() bool { return s.Pending() == 0 })
	got := fs.acceptedIDs()
	if len(got) != 2 || got[0] != "x10" || got[1] != "x13" {
		t.Errorf("delivered %v, want [x10 x13]", got)
	}
	if n := testutil.ToFloat64(m.coalesced.WithLabelValues(events.TypePodChanged)); n != 3 {
		t.Errorf("coalesced %v, want 3", n)
	}
}

func TestShutdownCountsWhatIsLeft(t *testing.T) {
	fs := newFakeSender()
	fs.script["a"] = []int{503, 503, 503, 503, 503, 503, 503, 503}
	m := NewMetrics(prometheus.NewRegistry())
	s := New(fs, m, Options{RetryBaseDelay: time.Hour, DrainTimeout: 100 * time.Millisecond, Log: discard()})
	stop := run(t, s)
	s.Enqueue("k/a", 1, ev("a"))
	waitFor(t, "a first attempt", func() bool { fs.mu.Lock(); defer fs.mu.Unlock(); return fs.attempts["a"] == 1 })
	start := time.Now()
	stop()
	if time.Since(start) > 5*time.Second {
		t.Error("shutdown waited for the retry backoff")
	}
	if n := testutil.ToFloat64(m.dropped.WithLabelValues(events.TypePodChanged, "shutdown")); n != 1 {
		t.Errorf("dropped at shutdown: %v", n)
	}
}

// Through the real CloudEvents client: binary mode, and the receiver's 4xx reason kept.
func TestHTTPBinaryMode(t *testing.T) {
	var mu sync.Mutex
	var headers []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		headers = append(headers, r.Header.Clone())
		mu.Unlock()
		if r.Header.Get("Ce-Id") == "bad" {
			http.Error(w, "invalid data: phase", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	client, err := cloudevents.NewClientHTTP(cehttp.WithTarget(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	s := New(client, m, Options{Log: discard()})
	stop := run(t, s)
	defer stop()
	good := ev("good")
	_ = good.SetData(events.ContentType, map[string]string{"a": "b"})
	s.Enqueue("k/good", 1, good)
	s.Enqueue("k/bad", 1, ev("bad"))
	waitFor(t, "both handled", func() bool { return s.Pending() == 0 })
	mu.Lock()
	defer mu.Unlock()
	for _, h := range headers {
		if h.Get("Ce-Specversion") != "1.0" || h.Get("Ce-Type") != events.TypePodChanged {
			t.Errorf("not binary mode: %v", h)
		}
	}
	if testutil.ToFloat64(m.sent.WithLabelValues(events.TypePodChanged)) != 1 || testutil.ToFloat64(m.dropped.WithLabelValues(events.TypePodChanged, "rejected")) != 1 {
		t.Error("the 400 was not classified as a rejection")
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		res  protocol.Result
		want outcome
	}{
		{cehttp.NewResult(202, ""), delivered},
		{cehttp.NewResult(200, ""), delivered},
		{cehttp.NewResult(400, ""), rejected},
		{cehttp.NewResult(413, ""), rejected},
		{cehttp.NewResult(404, ""), retry},
		{cehttp.NewResult(429, ""), retry},
		{cehttp.NewResult(500, ""), retry},
		{cehttp.NewResult(503, ""), retry},
		{errors.New("dial tcp: refused"), retry},
		{protocol.ResultACK, delivered},
	} {
		if got, _ := classify(tc.res); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.res, got, tc.want)
		}
	}
}
