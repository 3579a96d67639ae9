// Package hub is the fan-out core of the SSE router: shared upstreams kept in registries
// by key and reference-counted (lingering a while after the last subscriber leaves),
// messages encoded once and handed as the same bytes to every subscriber, and clients with
// bounded queues that are dropped, never waited for, when they fall behind.
package hub

import (
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// Event is one server-sent event of a topic, encoded once.
type Event struct {
	// Name is the SSE event type (e.g. "modified", "log", "end").
	Name string
	// ID is the position to resume from after this event (Last-Event-ID).
	ID string
	// Data are the encoded `data:` lines.
	Data []byte
}

// NewEvent encodes payload (normally one line of JSON) as an event.
func NewEvent(name, id string, payload []byte) Event {
	return Event{Name: name, ID: id, Data: sse.AppendData(make([]byte, 0, len(payload)+8), payload)}
}

// Message is what a topic hands its subscribers at once: one or more events (a batch of
// log lines, a snapshot), encoded once. Plain streams write Wire as it is; the multiplexed
// stream re-frames Events with its own event names and ids around the same data bytes.
type Message struct {
	Events []Event
	// Wire is the plain stream's encoding of all Events, shared by every plain subscriber.
	Wire []byte
	// End says the topic is over after this message: the subscription ends with it.
	End bool
}

// NewMessage encodes events for plain streams.
func NewMessage(end bool, events ...Event) *Message {
	n := 0
	for _, e := range events {
		n += len(e.Name) + len(e.ID) + len(e.Data) + 16
	}
	wire := make([]byte, 0, n)
	for _, e := range events {
		wire = sse.AppendEvent(wire, e.Name, e.ID, e.Data)
	}
	return &Message{Events: events, Wire: wire, End: end}
}

// LastID is the ID of the message's last event ("" for an empty message).
func (m *Message) LastID() string {
	if len(m.Events) == 0 {
		return ""
	}
	return m.Events[len(m.Events)-1].ID
}
