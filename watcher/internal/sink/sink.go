// Package sink delivers the watcher's events to K_SINK. Events wait in a queue keyed by
// the object (or snapshot) they describe: a newer state of the same object replaces one
// not yet sent, since each event carries the whole state; nothing else is dropped. A
// delivery that fails is retried with exponential backoff until it succeeds, except when
// the receiver rejects the event itself (a 4xx other than 401, 404, 408, 409, 425 and 429),
// which retrying cannot fix: that is logged and counted. Every failed delivery is counted.
package sink

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

// Sender sends one event; a cloudevents.Client is one.
type Sender interface {
	Send(ctx context.Context, e event.Event) protocol.Result
}

// Options tune a Sink.
type Options struct {
	// Workers send concurrently (default 4).
	Workers int
	// Timeout bounds one delivery (default 10 s).
	Timeout time.Duration
	// RetryBaseDelay and RetryMaxDelay bound the backoff between deliveries of an event
	// that failed (defaults 100 ms and 30 s).
	RetryBaseDelay, RetryMaxDelay time.Duration
	// DrainTimeout is how long pending events are still sent once Run's context ends.
	DrainTimeout time.Duration
	Log          *slog.Logger
}

// Sink queues and delivers events.
type Sink struct {
	sender  Sender
	opts    Options
	metrics *Metrics
	queue   workqueue.TypedRateLimitingInterface[string]

	mu      sync.Mutex
	pending map[string]item
	seq     uint64
}

type item struct {
	e   event.Event
	ord events.Ordering
	seq uint64
}

// New returns a Sink sending with sender; metrics may be shared by successive Sinks.
func New(sender Sender, metrics *Metrics, opts Options) *Sink {
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.RetryBaseDelay <= 0 {
		opts.RetryBaseDelay = 100 * time.Millisecond
	}
	if opts.RetryMaxDelay <= 0 {
		opts.RetryMaxDelay = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	return &Sink{
		sender: sender, opts: opts, metrics: metrics, pending: map[string]item{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](opts.RetryBaseDelay, opts.RetryMaxDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: ""}),
	}
}

// Enqueue queues e under key, the object or snapshot it describes. An event of the same
// key still waiting is replaced, unless it is newer (a greater ordering key).
func (s *Sink) Enqueue(key string, ord events.Ordering, e event.Event) {
	s.mu.Lock()
	if cur, ok := s.pending[key]; ok {
		s.metrics.coalesced.WithLabelValues(cur.e.Type()).Inc()
		if cur.ord > ord {
			s.mu.Unlock()
			return
		}
	}
	s.seq++
	s.pending[key] = item{e: e, ord: ord, seq: s.seq}
	s.metrics.pending.Set(float64(len(s.pending)))
	s.mu.Unlock()
	s.queue.Add(key)
}

// Pending is the number of events waiting to be delivered.
func (s *Sink) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Run delivers events until ctx ends, then for at most DrainTimeout what is still
// queued (one attempt each); what is left then is counted as dropped.
func (s *Sink) Run(ctx context.Context) {
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var wg sync.WaitGroup
	for range s.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.next(sendCtx) {
			}
		}()
	}
	<-ctx.Done()
	s.queue.ShutDown()
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(s.opts.DrainTimeout):
		cancel()
		<-drained
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.pending); n > 0 {
		for _, it := range s.pending {
			s.metrics.dropped.WithLabelValues(it.e.Type(), "shutdown").Inc()
		}
		s.opts.Log.Warn("stopped with events not delivered; the next leader's full-state round covers them", "events", n)
		clear(s.pending)
		s.metrics.pending.Set(0)
	}
}

// next delivers the next queued event; false once the queue is shut down and empty.
func (s *Sink) next(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	s.mu.Lock()
	it, ok := s.pending[key]
	s.mu.Unlock()
	if !ok {
		s.queue.Forget(key)
		return true
	}
	typ := it.e.Type()
	sctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	start := time.Now()
	res := s.sender.Send(cloudevents.WithEncodingBinary(sctx), it.e)
	cancel()
	s.metrics.duration.Observe(time.Since(start).Seconds())
	outcome, status := classify(res)
	switch outcome {
	case delivered:
		s.metrics.sent.WithLabelValues(typ).Inc()
		s.done(key, it)
	case rejected:
		s.metrics.undelivered.WithLabelValues(typ, "rejected").Inc()
		s.metrics.dropped.WithLabelValues(typ, "rejected").Inc()
		s.opts.Log.Error("the sink rejected an event; it is dropped", "type", typ, "id", it.e.ID(), "subject", it.e.Subject(), "status", status, "reason", res.Error())
		s.done(key, it)
	default:
		reason := "unreachable"
		if status != 0 {
			reason = "nack"
		}
		s.metrics.undelivered.WithLabelValues(typ, reason).Inc()
		s.opts.Log.Warn("event not delivered; retrying", "type", typ, "id", it.e.ID(), "status", status, "err", res, "attempts", s.queue.NumRequeues(key)+1)
		s.queue.AddRateLimited(key)
	}
	return true
}

// done forgets a delivered (or rejected) event, unless a newer one of the key came in.
func (s *Sink) done(key string, it item) {
	s.queue.Forget(key)
	s.mu.Lock()
	if cur, ok := s.pending[key]; ok && cur.seq == it.seq {
		delete(s.pending, key)
	}
	s.metrics.pending.Set(float64(len(s.pending)))
	s.mu.Unlock()
}

type outcome int

const (
	delivered outcome = iota
	retry
	rejected
)

// classify reads a delivery's result: the HTTP status when there is one.
func classify(res protocol.Result) (outcome, int) {
	var hr *cehttp.Result
	if cloudevents.ResultAs(res, &hr) {
		switch code := hr.StatusCode; {
		case code >= 200 && code < 300:
			return delivered, code
		// 401: the sink did not take the token, which a rotation (read at the next
		// delivery) may fix.
		case code == http.StatusUnauthorized, code == http.StatusNotFound, code == http.StatusRequestTimeout, code == http.StatusConflict,
			code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500:
			return retry, code
		default:
			return rejected, code
		}
	}
	if cloudevents.IsACK(res) {
		return delivered, 0
	}
	return retry, 0
}

// Metrics are the Sink's Prometheus metrics.
type Metrics struct {
	sent        *prometheus.CounterVec
	undelivered *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	coalesced   *prometheus.CounterVec
	pending     prometheus.Gauge
	duration    prometheus.Histogram
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_events_sent_total",
			Help: "Events delivered to the sink, by type."}, []string{"type"}),
		undelivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_events_undelivered_total",
			Help: "Deliveries that failed, by type and reason (unreachable, nack: retried; rejected: dropped)."}, []string{"type", "reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_events_dropped_total",
			Help: "Events given up, by type and reason (rejected by the sink; pending at shutdown)."}, []string{"type", "reason"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_events_coalesced_total",
			Help: "Events replaced by a newer state of the same object before they were sent, by type."}, []string{"type"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dwp_watcher_events_pending",
			Help: "Events waiting to be delivered."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dwp_watcher_send_duration_seconds",
			Help: "Duration of one delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
	}
	reg.MustRegister(m.sent, m.undelivered, m.dropped, m.coalesced, m.pending, m.duration)
	return m
}
