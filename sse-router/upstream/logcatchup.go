package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// A pod log topic keeps only its last lines. Subscribers wanting older ones (the whole
// log, typically: every browser opening a build's log) used to read them each on its
// own, each holding the whole log: 2,000 of them on a 43 MB log made 2,000 reads and
// grew the router by gigabytes. Now the subscribers wanting the same lines share one
// read, streamed to all of them in chunks, each encoded once and delivered as the same
// message to everyone, and then join the topic together. The lines read stay a while
// after the read (the old part of a log never changes): subscribers coming soon after
// get them again, and only the lines since from the ring.

// catchUpChunk is the least a catch-up message carries. Chunks grow with the read (to a
// sixteenth of what was read before them) so that even a very large log comes as a few
// hundred messages at most, well within a client's queue.
const catchUpChunk = 256 << 10

// maxCatchUpReads bounds the reads of one catch-up that the followed lines outrun.
const maxCatchUpReads = 5

// catchUpKeep is how long the lines of a catch-up read are kept for more subscribers
// once no one comes for them.
const catchUpKeep = 30 * time.Second

// errTopicClosed: the topic stopped while a subscriber was joining it.
var errTopicClosed = errors.New("the log topic has stopped")

// catchUpKey tells which subscribers can share a read: those wanting the same lines.
type catchUpKey struct {
	w      wanted
	follow bool
}

// catchUp is one shared read of older lines and the subscribers it serves. t.mu guards
// its membership on the topic (catchUps); mu guards its members and what it sent.
type catchUp struct {
	key    catchUpKey
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed once every member has been attached to the topic (or given up).
	done chan struct{}

	mu      sync.Mutex
	members map[*hub.Subscription]struct{}
	// sent are the chunks sent so far: a subscriber joining the read late gets them
	// first. They are the log's older lines once, shared by everyone.
	sent []*hub.Message

	// Once the read is over (finished), and while it is kept: the last line it read
	// (reached), and whether it read any (read). Guarded by t.mu.
	finished bool
	reached  api.LogPos
	read     bool
	keep     *time.Timer
}

// joinCatchUpLocked makes s a member of the read of the lines w, starting the read when
// none is under way, and returns it; or, when a finished read of them is kept and the
// ring still reaches back to its end, attaches s after its lines and returns nil.
func (t *podLogTopic) joinCatchUpLocked(s *hub.Subscription, w wanted, follow bool) *catchUp {
	key := catchUpKey{w: w, follow: follow}
	c := t.catchUps[key]
	if c != nil && c.finished {
		if !t.hasEvicted || !c.reached.Less(t.evicted) {
			c.keep.Reset(catchUpKeep)
			for _, m := range c.sent {
				if !s.Deliver(m) {
					return nil
				}
			}
			t.attachAfterLocked([]*hub.Subscription{s}, nil, c.key, c.reached, c.read)
			return nil
		}
		// Lines after the read have left the ring: read again.
		t.dropCatchUpLocked(c)
		c = nil
	}
	if c == nil {
		ctx, cancel := context.WithCancel(t.runCtx)
		c = &catchUp{key: key, ctx: ctx, cancel: cancel, done: make(chan struct{}), members: map[*hub.Subscription]struct{}{}}
		if t.catchUps == nil {
			t.catchUps = map[catchUpKey]*catchUp{}
		}
		t.catchUps[key] = c
		t.readers.Go(func() { t.runCatchUp(c) })
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.sent {
		if !s.Deliver(m) {
			return c
		}
	}
	c.members[s] = struct{}{}
	return c
}

// dropCatchUpLocked forgets c (a read no one waits for, or a kept one gone stale).
func (t *podLogTopic) dropCatchUpLocked(c *catchUp) {
	if t.catchUps[c.key] == c {
		delete(t.catchUps, c.key)
	}
	if c.keep != nil {
		c.keep.Stop()
	}
	c.cancel()
}

// leaveCatchUp removes s from c, a subscriber that stopped waiting; the read stops when
// no one waits for it any more.
func (t *podLogTopic) leaveCatchUp(c *catchUp, s *hub.Subscription) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.mu.Lock()
	delete(c.members, s)
	empty := len(c.members) == 0
	c.mu.Unlock()
	if empty && !c.finished {
		t.dropCatchUpLocked(c)
	}
}

// send delivers a chunk to every member, dropping those that cannot take it.
func (c *catchUp) send(m *hub.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent = append(c.sent, m)
	for s := range c.members {
		if !s.Deliver(m) {
			delete(c.members, s)
		}
	}
}

// runCatchUp reads the older lines c's members want, sends them, and attaches the
// members to the topic after them: the ring's lines past the last line read, then the
// live ones. If the follow outran the ring during the read, it reads on from the last
// line read (a few times at most).
func (t *podLogTopic) runCatchUp(c *catchUp) {
	defer c.cancel()
	defer close(c.done)
	w := c.key.w
	req := logRequest{container: t.container}
	var skip *api.LogPos
	// reached is the last line sent; the zero position is before every line.
	var reached api.LogPos
	if w.hasAfter {
		since := w.after.Time()
		req.since, skip, reached = &since, &w.after, w.after
	} else if w.tail >= 0 {
		req.tail = &w.tail
	}
	ch := chunker{send: c.send}
	var (
		err error
		gap bool
	)
	for reads := 1; ; reads++ {
		t.metrics.Request(string(api.KindPodLog), "fetch")
		err = t.streamLog(c.ctx, req, skip, func(lines []logLine) {
			for _, l := range lines {
				ch.add(encodeLogLine(l, "", "", ""))
			}
			reached = lines[len(lines)-1].pos
		})
		ch.flush()
		t.mu.Lock()
		gap = err == nil && t.hasEvicted && reached.Less(t.evicted)
		if !gap || reads == maxCatchUpReads {
			break
		}
		t.mu.Unlock()
		since, last := reached.Time(), reached
		req, skip = logRequest{container: t.container, since: &since}, &last
	}
	defer t.mu.Unlock()
	c.mu.Lock()
	members := make([]*hub.Subscription, 0, len(c.members))
	for s := range c.members {
		members = append(members, s)
	}
	c.members = nil
	c.mu.Unlock()

	var events []hub.Event
	switch {
	case err != nil:
		t.metrics.Error(string(api.KindPodLog))
		t.log.Warn("pod log: earlier lines could not be read", "namespace", t.ns, "pod", t.pod, "container", t.container, "err", err)
		events = append(events, errorEvent(reached.String(), publicErrorf(api.CodeGap, "earlier lines could not be read"), true))
	case gap:
		t.metrics.Error(string(api.KindPodLog))
		events = append(events, errorEvent(reached.String(), publicErrorf(api.CodeGap, "the log grew faster than it could be read: some earlier lines are missing"), true))
	}
	if len(events) == 0 && t.catchUps[c.key] == c && t.runCtx.Err() == nil {
		// A whole read: kept for the subscribers to come.
		c.finished, c.reached, c.read = true, reached, ch.total > 0
		c.keep = time.AfterFunc(catchUpKeep, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.dropCatchUpLocked(c)
		})
	} else {
		t.dropCatchUpLocked(c)
		c.sent = nil
	}
	t.attachAfterLocked(members, events, c.key, reached, ch.total > 0)
}

// attachAfterLocked attaches members, which got the lines of a catch-up read up to
// reached (when read; else none), after events: with the ring's lines after reached, or,
// when the read got further than the follow, once the follow passes it.
func (t *podLogTopic) attachAfterLocked(members []*hub.Subscription, events []hub.Event, key catchUpKey, reached api.LogPos, read bool) {
	if len(members) == 0 {
		return
	}
	if !key.follow || t.end != nil || !read || (t.hasLast && !t.last.Less(reached)) {
		var kept []hub.Event
		if read || key.w.hasAfter {
			kept, _ = t.linesAfter(reached)
		} else {
			kept = t.linesFrom(0)
		}
		t.joinSharedLocked(members, append(events, kept...), key.follow)
		return
	}
	var msg *hub.Message
	if len(events) > 0 {
		msg = hub.NewMessage(false, events...)
	}
	for _, s := range members {
		if msg == nil || s.Deliver(msg) {
			t.waitLocked(s, reached)
		}
	}
}

// streamLog reads the topic's log to its current end, giving emit the lines after
// skipThrough.
func (t *podLogTopic) streamLog(ctx context.Context, r logRequest, skipThrough *api.LogPos, emit func([]logLine)) error {
	if err := streamLog(ctx, t.cs, t.ns, t.pod, r, skipThrough, emit); err != nil {
		return fmt.Errorf("reading the log of %s/%s: %w", t.ns, t.pod, err)
	}
	return nil
}

// chunker gathers events into messages of catchUpChunk bytes or more.
type chunker struct {
	send   func(*hub.Message)
	events []hub.Event
	bytes  int
	// total is the bytes sent so far.
	total int
}

func (c *chunker) add(ev hub.Event) {
	c.events = append(c.events, ev)
	c.bytes += len(ev.Data) + len(ev.ID) + len(ev.Name) + 16
	if c.bytes >= max(catchUpChunk, c.total/16) {
		c.flush()
	}
}

func (c *chunker) flush() {
	if len(c.events) == 0 {
		return
	}
	m := hub.NewMessage(false, c.events...)
	shareData(m)
	c.total += len(m.Wire)
	c.events, c.bytes = nil, 0
	c.send(m)
}

// shareData points each event's data at its copy inside m.Wire, so that a chunk held in
// memory holds its lines once rather than twice. An event whose encoding is not the one
// expected keeps its own data.
func shareData(m *hub.Message) {
	at := 0
	for i := range m.Events {
		e := &m.Events[i]
		if e.Name != "" {
			at += len("event: ") + len(e.Name) + 1
		}
		at += len("id: ") + len(e.ID) + 1
		end := at + len(e.Data)
		if end+1 > len(m.Wire) || !bytes.Equal(m.Wire[at:end], e.Data) {
			return
		}
		e.Data = m.Wire[at:end:end]
		at = end + 1
	}
}
