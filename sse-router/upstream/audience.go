package upstream

import (
	"sync"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// audience is a topic's subscribers and what a subscriber joining late is owed besides
// the topic's own state: the upstream failure in progress and, once the topic is over,
// its end. A topic embeds it and holds mu while it changes its state and delivers, so
// that a joining subscriber gets either the state before an event and then the event,
// or the state after it.
type audience struct {
	mu      sync.Mutex
	fan     hub.Fanout
	failure *hub.Message // the upstream failure in progress, if any
	end     *hub.Message // the topic is over: late subscribers get this last
}

// Unsubscribe implements Topic.
func (a *audience) Unsubscribe(s *hub.Subscription) {
	a.mu.Lock()
	a.fan.Remove(s)
	a.mu.Unlock()
}

// failLocked records msg as the upstream failure in progress and sends it to every
// subscriber.
func (a *audience) failLocked(msg *hub.Message) {
	a.failure = msg
	a.fan.Broadcast(msg)
}

// finish ends the topic: every subscriber, present and future, gets ev (when set) and
// the end.
func (a *audience) finish(ev hub.Event, reason string) {
	var events []hub.Event
	if ev.Name != "" {
		events = append(events, ev)
	}
	events = append(events, endEvent(reason))
	msg := hub.NewMessage(true, events...)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.end = msg
	a.fan.Broadcast(msg)
	a.fan = hub.Fanout{}
}

// joinLocked attaches s after delivering msg (when set), what s is owed of the topic's
// state, and then the failure in progress.
func (a *audience) joinLocked(s *hub.Subscription, msg *hub.Message) {
	if msg != nil && !s.Deliver(msg) {
		return
	}
	if a.failure != nil && !s.Deliver(a.failure) {
		return
	}
	a.fan.Add(s)
}

// joinLinesLocked delivers the lines s is owed, events, in one message with what comes
// after them: the end when the topic is over; else the failure in progress, and then
// an end of its own when s does not follow, or else s is attached.
func (a *audience) joinLinesLocked(s *hub.Subscription, events []hub.Event, follow bool) {
	if a.end != nil {
		events = append(events, a.end.Events...)
		s.Deliver(hub.NewMessage(true, events...))
		return
	}
	if a.failure != nil {
		events = append(events, a.failure.Events...)
	}
	if !follow {
		events = append(events, endEvent("done"))
		s.Deliver(hub.NewMessage(true, events...))
		return
	}
	if len(events) > 0 && !s.Deliver(hub.NewMessage(false, events...)) {
		return
	}
	a.fan.Add(s)
}
