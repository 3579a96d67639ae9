package upstream

import (
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// ring keeps the last cap items pushed, oldest first.
type ring[T any] struct {
	buf   []T
	start int // index of the oldest item
	n     int
}

func newRing[T any](capacity int) *ring[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &ring[T]{buf: make([]T, capacity)}
}

// push adds v, returning the item it evicted, if any.
func (r *ring[T]) push(v T) (evicted T, ok bool) {
	if r.n == len(r.buf) {
		evicted, ok = r.buf[r.start], true
		r.buf[r.start] = v
		r.start = (r.start + 1) % len(r.buf)
		return evicted, ok
	}
	r.buf[(r.start+r.n)%len(r.buf)] = v
	r.n++
	return evicted, false
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th oldest item.
func (r *ring[T]) at(i int) T { return r.buf[(r.start+i)%len(r.buf)] }

func (r *ring[T]) full() bool { return r.n == len(r.buf) }

func (r *ring[T]) reset() {
	clear(r.buf)
	r.start, r.n = 0, 0
}

// search returns the index of the first item for which after is true, given that after
// is false then true along the ring (len when none).
func (r *ring[T]) search(after func(T) bool) int {
	lo, hi := 0, r.n
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !after(r.at(m)) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// logEntry is a line a log topic keeps: its position and its event.
type logEntry struct {
	pos api.LogPos
	ev  hub.Event
}

// logRing is a log topic's last lines, oldest first, and what it knows of the lines
// before them. The topic's lock guards it.
type logRing struct {
	ring *ring[logEntry]
	// evicted is the position of the newest line pushed out of the ring.
	evicted    api.LogPos
	hasEvicted bool
	// last is the position of the newest line.
	last    api.LogPos
	hasLast bool
}

func newLogRing(capacity int) logRing { return logRing{ring: newRing[logEntry](capacity)} }

// push keeps the line at pos, reporting whether it pushed the oldest line out.
func (r *logRing) push(pos api.LogPos, ev hub.Event) bool {
	old, evicted := r.ring.push(logEntry{pos: pos, ev: ev})
	if evicted {
		r.evicted, r.hasEvicted = old.pos, true
	}
	r.last, r.hasLast = pos, true
	return evicted
}

// newestID is the newest line's id ("" before the first line).
func (r *logRing) newestID() string {
	if !r.hasLast {
		return ""
	}
	return r.last.String()
}

// linesFrom returns the lines kept from the i-th oldest on.
func (r *logRing) linesFrom(i int) []hub.Event {
	events := make([]hub.Event, 0, max(r.ring.len()-i, 0))
	for ; i < r.ring.len(); i++ {
		events = append(events, r.ring.at(i).ev)
	}
	return events
}

// linesAfter returns the lines kept after p, and whether some lines after p were pushed
// out of the ring (so that they are missing).
func (r *logRing) linesAfter(p api.LogPos) (events []hub.Event, lost bool) {
	i := r.ring.search(func(e logEntry) bool { return p.Less(e.pos) })
	return r.linesFrom(i), r.hasEvicted && p.Less(r.evicted)
}

// change is a message a topic sent at a position (a resourceVersion, a sequence
// number), kept for subscribers that come back.
type change struct {
	pos uint64
	msg *hub.Message
}

// changesAfter returns, in one message, the changes r holds after pos; nil when there
// are none.
func changesAfter(r *ring[change], pos uint64) *hub.Message {
	var events []hub.Event
	for i := r.search(func(c change) bool { return c.pos > pos }); i < r.len(); i++ {
		events = append(events, r.at(i).msg.Events...)
	}
	if len(events) == 0 {
		return nil
	}
	return hub.NewMessage(false, events...)
}
