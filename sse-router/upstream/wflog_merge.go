package upstream

import (
	"container/heap"
	"context"
	"math"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// The merged log of a workflow is ordered by each line's timestamp, then its pod's name,
// then its order within the pod (lineParser's rank), and a line's position is its
// timestamp and its rank among the merged lines of that timestamp. Both depend on the
// lines only, not on when they arrived: a topic started later (after the first one
// lingered out, or on another replica) gives every line the same position, so that a
// browser resuming with Last-Event-ID anywhere gets exactly the lines after its own.
// That holds as long as lines are merged before they are sent, which the watermarks of
// the pods' follows see to.

// podFollower is the follow of one pod's log.
type podFollower struct {
	uid        types.UID
	pod        string
	node       string
	cancel     context.CancelFunc
	terminated atomic.Bool
	primed     atomic.Bool
	// lastActivity is when a line last came (Unix nanos), or when the pod terminated.
	lastActivity atomic.Int64
	done         bool

	// Run loop only. newest is the position (Unix nanos) of the newest line received;
	// live is set once the follow has read its backlog (see watermark).
	newest int64
	live   bool
}

// watermark is the time (Unix nanos) before which f will, as far as can be told, send no
// more lines; behind says f is still reading its backlog (or waiting for its first
// answer), so that lines waiting for it must keep waiting however long it takes: sending
// them would give f's older lines positions out of order.
//
// A follow counts as at the end of its log once it has been idle for maxWait (a read of
// a backlog may pause, but not that long); from then on, whenever it has been idle for
// a merge window, its next line is a new one, stamped (up to a window of delay) after now.
func (f *podFollower) watermark(now time.Time, opts workflowLogOptions) (wm int64, behind bool) {
	idle := now.Sub(time.Unix(0, f.lastActivity.Load()))
	switch {
	case !f.primed.Load():
		// A follow whose first answer is slow may hold the oldest lines of all; one that
		// does not answer at all is given up on after maxWait.
		return f.newest, idle < opts.maxWait
	case !f.live && idle >= opts.maxWait:
		f.live = true
	}
	if f.live && idle >= opts.window {
		return max(f.newest, now.Add(-opts.window).UnixNano()), false
	}
	return f.newest, !f.live
}

// mergeable says whether top, the earliest line waiting, can be sent: every other pod
// still followed is past its time, or it waited maxWait for pods at the end of their
// logs (a node whose clock lags must not hold every other pod's lines back).
func mergeable(top *heapLine, followers map[types.UID]*podFollower, now time.Time, opts workflowLogOptions) bool {
	for _, f := range followers {
		if f.done || f.uid == top.uid {
			continue
		}
		wm, behind := f.watermark(now, opts)
		if top.line.pos.Nanos < wm {
			continue
		}
		if behind || now.Sub(top.arrived) < opts.maxWait {
			return false
		}
	}
	return true
}

// heapLine is a line waiting to be merged.
type heapLine struct {
	line      logLine
	uid       types.UID
	pod, node string
	arrived   time.Time
	seq       uint64
}

// lineHeap orders lines of several pods by time, pod name and rank within the pod (then
// arrival, for a pod's lines read twice around a restart of its container).
type lineHeap []*heapLine

func (h lineHeap) Len() int { return len(h) }
func (h lineHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	switch {
	case a.line.pos.Nanos != b.line.pos.Nanos:
		return a.line.pos.Nanos < b.line.pos.Nanos
	case a.pod != b.pod:
		return a.pod < b.pod
	case a.line.pos.Rank != b.line.pos.Rank:
		return a.line.pos.Rank < b.line.pos.Rank
	}
	return a.seq < b.seq
}
func (h lineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lineHeap) Push(x any)   { *h = append(*h, x.(*heapLine)) }
func (h *lineHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}

// merger holds the lines received and not yet sent.
type merger struct {
	h   lineHeap
	seq uint64
}

func (m *merger) add(pl podLines, now time.Time) {
	for _, l := range pl.lines {
		m.seq++
		heap.Push(&m.h, &heapLine{line: l, uid: pl.uid, pod: pl.pod, node: pl.node, arrived: now, seq: m.seq})
	}
}

// take pops, in order, the lines that can be sent (all of them when all is set).
func (m *merger) take(all bool, followers map[types.UID]*podFollower, now time.Time, opts workflowLogOptions) ([]logLine, []podLines) {
	var (
		out  []logLine
		meta []podLines
	)
	for m.h.Len() > 0 {
		top := m.h[0]
		if !all && !mergeable(top, followers, now, opts) {
			break
		}
		heap.Pop(&m.h)
		out = append(out, top.line)
		meta = append(meta, podLines{pod: top.pod, node: top.node})
	}
	return out, meta
}

// nextPos is the position of a line stamped nanos that follows prev (when hasPrev) in
// the merged log: its time, ranked after the lines of the same time. A line that comes
// later than lines stamped after it (a pod that was given up waiting for) takes the next
// position after prev, so that positions only grow and no id repeats.
func nextPos(nanos int64, prev api.LogPos, hasPrev bool) api.LogPos {
	pos := api.LogPos{Nanos: nanos}
	if hasPrev && !prev.Less(pos) {
		if prev.Rank == math.MaxInt32 {
			return api.LogPos{Nanos: prev.Nanos + 1}
		}
		pos = api.LogPos{Nanos: prev.Nanos, Rank: prev.Rank + 1}
	}
	return pos
}

// publish sends merged lines with their positions.
func (t *workflowLogTopic) publish(lines []logLine, meta []podLines) {
	if len(lines) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	events := make([]hub.Event, len(lines))
	positions := make([]api.LogPos, len(lines))
	for i, l := range lines {
		pos := nextPos(l.time.UnixNano(), t.last, t.hasLast)
		positions[i] = pos
		l.pos = pos
		events[i] = encodeLogLine(l, meta[i].pod, meta[i].node, "")
		t.push(pos, events[i])
	}
	t.broadcastLinesLocked(hub.NewMessage(false, events...), positions)
}
