package upstream

import (
	"context"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"math"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// podLogTopic is one shared log follow of one container. It first reads the last lines
// (as many as its ring holds), then follows; when the follow breaks it resumes at the
// last line's time and skips what it had (the API takes whole seconds). Subscribers get
// the lines they ask for (tailLines, sinceTime, or after their Last-Event-ID) from the
// ring, or, when the ring no longer reaches back far enough, from one extra read.
type podLogTopic struct {
	cs        kubernetes.Interface
	ns, pod   string
	container string
	metrics   *hub.Metrics
	log       *slog.Logger
	backoff   [2]time.Duration

	ready     chan struct{}
	readyOnce sync.Once

	logAudience
	logRing
	// complete: the ring holds the log from its very first line.
	complete bool

	// runCtx is Run's: the shared catch-up reads run under it, in readers. catchUps are
	// the reads under way by what they read; closed is set once Run no longer waits for
	// readers, when no read may start.
	runCtx   context.Context
	readers  sync.WaitGroup
	catchUps map[catchUpKey]*catchUp
	closed   bool
}

func newPodLogTopic(cs kubernetes.Interface, ns, pod, container string, replay int, m *hub.Metrics, log *slog.Logger, backoff [2]time.Duration) *podLogTopic {
	return &podLogTopic{
		cs: cs, ns: ns, pod: pod, container: container, metrics: m, log: log, backoff: backoff,
		ready: make(chan struct{}), logRing: newLogRing(replay), runCtx: context.Background(),
	}
}

func (t *podLogTopic) markReady() { t.readyOnce.Do(func() { close(t.ready) }) }

// Run fills the ring and follows the log until ctx ends or the log ends.
// It then stays until ctx ends, for the catch-up reads of late subscribers.
func (t *podLogTopic) Run(ctx context.Context) {
	t.runCtx = ctx
	defer func() {
		<-ctx.Done()
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.readers.Wait()
	}()
	defer t.markReady()
	if t.container == "" {
		pod, err := t.cs.CoreV1().Pods(t.ns).Get(ctx, t.pod, metav1.GetOptions{})
		t.metrics.Request(string(api.KindPodLog), "get")
		if err != nil {
			if gone, _, _ := logProblem(err); gone {
				t.finish(notFoundEvent("", fmt.Sprintf("pod %s/%s not found", t.ns, t.pod)), "not-found")
				return
			}
			t.log.Warn("pod log upstream failed", "namespace", t.ns, "pod", t.pod, "err", err)
			t.finish(errorEvent("", err, false), "error")
			return
		}
		c, err := defaultContainer(pod)
		if err != nil {
			t.finish(errorEvent("", err, false), "error")
			return
		}
		t.container = c
	}
	if !t.fill(ctx) {
		return
	}
	t.markReady()
	t.follow(ctx)
}

// fill reads the last lines into the ring; false when the topic is over.
func (t *podLogTopic) fill(ctx context.Context) bool {
	retry := newLogRetry(t.backoff)
	tail := int64(len(t.ring.buf))
	for ctx.Err() == nil {
		t.metrics.Request(string(api.KindPodLog), "fetch")
		lines, err := fetchLog(ctx, t.cs, t.ns, t.pod, logRequest{container: t.container, tail: &tail}, nil)
		if err == nil {
			t.publish(lines)
			t.mu.Lock()
			t.complete = int64(len(lines)) < tail
			if !t.complete && t.ring.len() > 0 {
				// Older lines may exist before the first one kept.
				t.evicted, t.hasEvicted = t.ring.at(0).pos.Before(), true
			}
			t.failure = nil
			t.mu.Unlock()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		t.metrics.Error(string(api.KindPodLog))
		gone, waiting, fatal := logProblem(err)
		switch {
		case gone:
			t.finish(notFoundEvent("", fmt.Sprintf("pod %s/%s not found", t.ns, t.pod)), "not-found")
			return false
		case fatal:
			t.log.Info("pod log refused", "namespace", t.ns, "pod", t.pod, "container", t.container, "err", err)
			t.finish(errorEvent("", err, false), "error")
			return false
		case waiting:
			// Nothing logged yet: the ring is the whole (empty) log, and following
			// will start at the first line.
			t.mu.Lock()
			t.complete = true
			t.mu.Unlock()
			return true
		}
		t.fail(err)
		retry.backoff(ctx)
	}
	return false
}

func (t *podLogTopic) follow(ctx context.Context) {
	retry := newLogRetry(t.backoff)
	for ctx.Err() == nil {
		t.mu.Lock()
		req := logRequest{container: t.container, follow: true}
		var skip *api.LogPos
		if t.hasLast {
			since := t.last.Time()
			req.since = &since
			last := t.last
			skip = &last
		}
		t.mu.Unlock()

		closed := t.metrics.UpstreamOpen(string(api.KindPodLog), "follow")
		body, err := openLog(ctx, t.cs, t.ns, t.pod, req)
		if err == nil {
			t.clearFailure()
			err = readLines(body, &lineParser{}, skip, t.publish)
			body.Close()
		}
		closed()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			t.metrics.Error(string(api.KindPodLog))
			gone, waiting, fatal := logProblem(err)
			switch {
			case gone:
				t.finish(notFoundEvent(t.lastID(), fmt.Sprintf("pod %s/%s no longer exists", t.ns, t.pod)), "pod-deleted")
				return
			case fatal:
				t.log.Info("pod log refused", "namespace", t.ns, "pod", t.pod, "container", t.container, "err", err)
				t.finish(errorEvent(t.lastID(), err, false), "error")
				return
			case waiting:
				t.fail(err)
				retry.short(ctx)
				continue
			}
			t.fail(err)
			retry.backoff(ctx)
			continue
		}
		retry.reset()
		// The stream ended: the container is done, or the connection was cut.
		pod, err := t.cs.CoreV1().Pods(t.ns).Get(ctx, t.pod, metav1.GetOptions{})
		t.metrics.Request(string(api.KindPodLog), "get")
		if err == nil && containerDone(pod, t.container) {
			t.finish(hub.Event{}, "terminated")
			return
		}
		if gone, _, _ := logProblem(err); err != nil && gone {
			t.finish(hub.Event{}, "pod-deleted")
			return
		}
		retry.short(ctx)
	}
}

func (t *podLogTopic) lastID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.newestID()
}

func encodeLogLine(l logLine, pod, node, container string) hub.Event {
	return hub.NewEvent(api.EventLog, l.pos.String(), api.Marshal(logLinePayload{
		Type: api.EventLog, Time: l.time.Format(time.RFC3339Nano), Pod: pod, Node: node, Container: container, Line: l.text,
	}))
}

func (t *podLogTopic) publish(lines []logLine) {
	if len(lines) == 0 {
		return
	}
	events := make([]hub.Event, len(lines))
	for i, l := range lines {
		events[i] = encodeLogLine(l, "", "", "")
	}
	msg := hub.NewMessage(false, events...)
	positions := make([]api.LogPos, len(lines))
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, l := range lines {
		positions[i] = l.pos
		if t.push(l.pos, events[i]) {
			t.complete = false
		}
	}
	t.broadcastLinesLocked(msg, positions)
}

func (t *podLogTopic) fail(err error) {
	t.log.Warn("pod log upstream failed", "namespace", t.ns, "pod", t.pod, "container", t.container, "err", err)
	id := t.lastID()
	msg := hub.NewMessage(false, errorEvent(id, err, true))
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failure != nil && string(t.failure.Wire) == string(msg.Wire) {
		return
	}
	t.failLocked(msg)
}

func (t *podLogTopic) clearFailure() {
	t.mu.Lock()
	t.failure = nil
	t.mu.Unlock()
}

// Subscribe implements Topic: it waits until the ring is filled, then sends the lines
// asked for and attaches s. Lines older than the ring come from a read shared with the
// other subscribers wanting the same ones.
func (t *podLogTopic) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	want := linesWanted(j)

	t.mu.Lock()
	if events, covered := t.selectLocked(want); covered {
		defer t.mu.Unlock()
		t.joinLinesLocked(s, events, j.Spec.Follow)
		return nil
	}
	if t.closed {
		t.mu.Unlock()
		return errTopicClosed
	}
	c := t.joinCatchUpLocked(s, want, j.Spec.Follow)
	t.mu.Unlock()
	if c == nil {
		return nil // attached after the lines of a kept read
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		t.leaveCatchUp(c, s)
		return ctx.Err()
	}
}

// wanted says which lines a subscriber asks for: those after a position, or the last n.
type wanted struct {
	after    api.LogPos
	hasAfter bool
	tail     int64 // -1: no limit
}

func linesWanted(j Join) wanted {
	switch {
	case j.Resume.Set && !j.Resume.Ended:
		return wanted{after: j.Resume.Log, hasAfter: true, tail: -1}
	case j.Spec.SinceTime != nil:
		// Lines at or after the time: after the last possible position just before it.
		return wanted{after: api.LogPos{Nanos: j.Spec.SinceTime.UnixNano() - 1, Rank: math.MaxInt32}, hasAfter: true, tail: -1}
	case j.Spec.TailLines != nil:
		return wanted{tail: *j.Spec.TailLines}
	}
	return wanted{tail: -1}
}

// selectLocked returns the ring's lines the subscriber wants, and whether the ring
// holds all of them.
func (t *podLogTopic) selectLocked(w wanted) ([]hub.Event, bool) {
	n := t.ring.len()
	switch {
	case w.hasAfter:
		events, lost := t.linesAfter(w.after)
		return events, t.complete || !lost
	case w.tail >= 0 && int64(n) > w.tail:
		return t.linesFrom(n - int(w.tail)), true
	case w.tail >= 0:
		return t.linesFrom(0), t.complete || int64(n) == w.tail
	}
	// The whole log: the ring holds it only when it was never cut.
	return t.linesFrom(0), t.complete
}
