package upstream

import (
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// logAudience is a log topic's audience plus the subscribers waiting for a position:
// they joined ahead of what the topic has published (a browser resuming from a position
// that a fresh topic has not read up to yet, or a catch-up read that got ahead of the
// follow) and must not get the lines up to it a second time. Each gets the part of the
// first message that goes past its position, and is then attached like any other.
// Its methods shadow audience's so that the waiting subscribers also hear failures and
// the end.
type logAudience struct {
	audience
	waiting map[*hub.Subscription]api.LogPos
}

// waitLocked makes s wait for the lines after after; it gets the failure in progress now.
func (a *logAudience) waitLocked(s *hub.Subscription, after api.LogPos) {
	if a.end != nil {
		a.joinLinesLocked(s, nil, true)
		return
	}
	if a.failure != nil && !s.Deliver(a.failure) {
		return
	}
	if a.waiting == nil {
		a.waiting = map[*hub.Subscription]api.LogPos{}
	}
	a.waiting[s] = after
}

// broadcastLinesLocked sends msg, lines at positions, to the attached subscribers, and
// to each waiting one the lines after its position, attaching it.
func (a *logAudience) broadcastLinesLocked(msg *hub.Message, positions []api.LogPos) {
	a.fan.Broadcast(msg)
	for s, after := range a.waiting {
		i := 0
		for i < len(positions) && !after.Less(positions[i]) {
			i++
		}
		if i == len(positions) {
			continue
		}
		delete(a.waiting, s)
		m := msg
		if i > 0 {
			m = hub.NewMessage(false, msg.Events[i:]...)
		}
		if s.Deliver(m) {
			a.fan.Add(s)
		}
	}
}

// failLocked shadows audience.failLocked: waiting subscribers hear of failures too.
func (a *logAudience) failLocked(msg *hub.Message) {
	a.audience.failLocked(msg)
	for s := range a.waiting {
		if !s.Deliver(msg) {
			delete(a.waiting, s)
		}
	}
}

// finish shadows audience.finish: waiting subscribers get the end too. It is written
// out rather than delegated so that no subscriber can start waiting between the two.
func (a *logAudience) finish(ev hub.Event, reason string) {
	var events []hub.Event
	if ev.Name != "" {
		events = append(events, ev)
	}
	msg := hub.NewMessage(true, append(events, endEvent(reason))...)
	a.mu.Lock()
	defer a.mu.Unlock()
	for s := range a.waiting {
		a.fan.Add(s)
	}
	a.waiting = nil
	a.end = msg
	a.fan.Broadcast(msg)
	a.fan = hub.Fanout{}
}

// Unsubscribe implements Topic.
func (a *logAudience) Unsubscribe(s *hub.Subscription) {
	a.mu.Lock()
	a.fan.Remove(s)
	delete(a.waiting, s)
	a.mu.Unlock()
}

// joinSharedLocked is joinLinesLocked for many subscribers owed the same lines: they get
// one message, encoded once.
func (a *logAudience) joinSharedLocked(subs []*hub.Subscription, events []hub.Event, follow bool) {
	var msg *hub.Message
	switch {
	case a.end != nil:
		msg = hub.NewMessage(true, append(events, a.end.Events...)...)
	case !follow:
		if a.failure != nil {
			events = append(events, a.failure.Events...)
		}
		msg = hub.NewMessage(true, append(events, endEvent("done"))...)
	default:
		if a.failure != nil {
			events = append(events, a.failure.Events...)
		}
		if len(events) > 0 {
			msg = hub.NewMessage(false, events...)
		}
	}
	for _, s := range subs {
		if msg != nil && !s.Deliver(msg) || msg != nil && msg.End {
			continue
		}
		a.fan.Add(s)
	}
}
