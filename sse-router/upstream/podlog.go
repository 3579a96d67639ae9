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

	audience
	logRing
	// complete: the ring holds the log from its very first line.
	complete bool
}

func newPodLogTopic(cs kubernetes.Interface, ns, pod, container string, replay int, m *hub.Metrics, log *slog.Logger, backoff [2]time.Duration) *podLogTopic {
	return &podLogTopic{
		cs: cs, ns: ns, pod: pod, container: container, metrics: m, log: log, backoff: backoff,
		ready: make(chan struct{}), logRing: newLogRing(replay),
	}
}

func (t *podLogTopic) markReady() { t.readyOnce.Do(func() { close(t.ready) }) }

// Run fills the ring and follows the log until ctx ends or the log ends.
func (t *podLogTopic) Run(ctx context.Context) {
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
	backoff := t.backoff[0]
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
		sleep(ctx, jitter(backoff))
		backoff = min(2*backoff, t.backoff[1])
	}
	return false
}

func (t *podLogTopic) follow(ctx context.Context) {
	backoff := t.backoff[0]
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
				sleep(ctx, jitter(t.backoff[0]))
				continue
			}
			t.fail(err)
			sleep(ctx, jitter(backoff))
			backoff = min(2*backoff, t.backoff[1])
			continue
		}
		backoff = t.backoff[0]
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
		sleep(ctx, jitter(t.backoff[0]))
	}
}

func (t *podLogTopic) lastID() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.newestID()
}

func encodeLogLine(l logLine, pod, node, container string) hub.Event {
	return hub.NewEvent(api.EventLog, l.pos.String(), mustJSON(logLinePayload{
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
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, l := range lines {
		if t.push(l.pos, events[i]) {
			t.complete = false
		}
	}
	t.fan.Broadcast(msg)
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
// asked for and attaches s.
func (t *podLogTopic) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	want := linesWanted(j)

	t.mu.Lock()
	events, covered := t.selectLocked(want)
	if !covered {
		t.mu.Unlock()
		events = t.catchUp(ctx, want) // returns with t.mu held
	}
	defer t.mu.Unlock()
	t.joinLinesLocked(s, events, j.Spec.Follow)
	return nil
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

// maxCatchUpReads bounds the reads of one catch-up that the followed lines outrun.
const maxCatchUpReads = 5

// catchUp reads, besides the ring, the older lines a subscriber wants, and returns all
// the lines it wants. It returns with t.mu held, so that no line is published between
// the lines returned and the subscriber joining.
func (t *podLogTopic) catchUp(ctx context.Context, w wanted) []hub.Event {
	req := logRequest{container: t.container}
	var skip *api.LogPos
	// reached is the last line read; the zero position is before every line.
	var reached api.LogPos
	if w.hasAfter {
		since := w.after.Time()
		req.since = &since
		skip = &w.after
		reached = w.after
	} else if w.tail >= 0 {
		req.tail = &w.tail
	}
	var (
		older []logLine
		err   error
		gap   bool
	)
	for reads := 1; ; reads++ {
		t.metrics.Request(string(api.KindPodLog), "fetch")
		var more []logLine
		more, err = fetchLog(ctx, t.cs, t.ns, t.pod, req, skip)
		older = append(older, more...)
		if len(older) > 0 {
			reached = older[len(older)-1].pos
		}
		t.mu.Lock()
		// Lines followed while this read ran may already have left the ring: read on
		// from the last line read until the ring reaches back to it.
		gap = err == nil && t.hasEvicted && reached.Less(t.evicted)
		if !gap || reads == maxCatchUpReads {
			break
		}
		t.mu.Unlock()
		since, last := reached.Time(), reached
		req, skip = logRequest{container: t.container, since: &since}, &last
	}

	var events []hub.Event
	var first api.LogPos
	hasFirst := t.ring.len() > 0
	if hasFirst {
		first = t.ring.at(0).pos
	}
	for _, l := range older {
		if hasFirst && !l.pos.Less(first) {
			break
		}
		events = append(events, encodeLogLine(l, "", "", ""))
	}
	var kept []hub.Event
	if w.hasAfter {
		kept, _ = t.linesAfter(w.after)
	} else {
		kept = t.linesFrom(0)
	}
	events = append(events, kept...)
	if !w.hasAfter && w.tail >= 0 && int64(len(events)) > w.tail {
		events = events[int64(len(events))-w.tail:]
	}
	switch {
	case err != nil:
		t.metrics.Error(string(api.KindPodLog))
		t.log.Warn("pod log: earlier lines could not be read", "namespace", t.ns, "pod", t.pod, "container", t.container, "err", err)
		events = append([]hub.Event{errorEvent(t.newestID(), publicErrorf(api.CodeGap, "earlier lines could not be read"), true)}, events...)
	case gap:
		t.metrics.Error(string(api.KindPodLog))
		events = append([]hub.Event{errorEvent(t.newestID(), publicErrorf(api.CodeGap, "the log grew faster than it could be read: some earlier lines are missing"), true)}, events...)
	}
	return events
}
