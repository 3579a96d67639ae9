package hub

import (
	"sync"
)

// Reasons a client's stream is closed by the router.
const (
	// ReasonSlow: the client did not read fast enough and its queue filled up.
	ReasonSlow = "slow-client"
	// ReasonShutdown: the router is stopping; the client should reconnect (elsewhere).
	ReasonShutdown = "shutdown"
	// ReasonReplaced: a newer connection took over the same multiplexed session.
	ReasonReplaced = "replaced"
	// ReasonEnded: every subscription of the stream has ended.
	ReasonEnded = "ended"
	// ReasonRevoked: the user's token or right to the stream is no longer valid.
	ReasonRevoked = "revoked"
	// ReasonLifetime: the stream reached its maximum lifetime; the client reconnects.
	ReasonLifetime = "lifetime"
)

// Delivery is one queued message for one subscription of a client.
type Delivery struct {
	Sub *Subscription
	Msg *Message
}

// Client is the router's side of one browser connection: a bounded queue of deliveries
// that its writer drains. Topics never wait for a client: when the queue is full the
// client is closed (as slow) and its writer tells the browser why.
type Client struct {
	queue   chan Delivery
	done    chan struct{}
	once    sync.Once
	reason  string
	metrics *Metrics
}

// NewClient makes a client whose queue holds queueSize deliveries. m may be nil.
func NewClient(queueSize int, m *Metrics) *Client {
	if queueSize < 1 {
		queueSize = 1
	}
	return &Client{queue: make(chan Delivery, queueSize), done: make(chan struct{}), metrics: m}
}

// Deliveries is the queue the client's writer drains.
func (c *Client) Deliveries() <-chan Delivery { return c.queue }

// Done is closed when the client is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reason says why the client was closed; it is set before Done is closed.
func (c *Client) Reason() string {
	select {
	case <-c.done:
		return c.reason
	default:
		return ""
	}
}

// Close closes the client for reason; only the first call counts.
func (c *Client) Close(reason string) {
	c.once.Do(func() {
		c.reason = reason
		close(c.done)
	})
}

// NewSubscription is a subscription delivering into this client's queue; name is its
// name on a multiplexed stream ("" on a plain one).
func (c *Client) NewSubscription(name string) *Subscription {
	return &Subscription{client: c, name: name}
}

// Subscription is one client's interest in one topic.
type Subscription struct {
	client *Client
	name   string
}

// Name is the subscription's name on a multiplexed stream.
func (s *Subscription) Name() string { return s.name }

// Client is the client the subscription delivers to.
func (s *Subscription) Client() *Client { return s.client }

// Deliver queues m for the subscriber without ever blocking. If the queue is full the
// client is closed as slow: the others are never delayed by it. It reports whether m
// was queued.
func (s *Subscription) Deliver(m *Message) bool {
	c := s.client
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.queue <- Delivery{Sub: s, Msg: m}:
		return true
	default:
		c.once.Do(func() {
			c.reason = ReasonSlow
			close(c.done)
			if c.metrics != nil {
				c.metrics.SlowClientsDropped.Inc()
			}
		})
		return false
	}
}

// Fanout is the set of subscriptions of one topic. It has no lock of its own: the topic
// changes its state and delivers under its own lock, so that a joining subscriber gets
// either the state before an event and then the event, or the state after it.
type Fanout struct {
	subs map[*Subscription]struct{}
}

// Add adds s.
func (f *Fanout) Add(s *Subscription) {
	if f.subs == nil {
		f.subs = map[*Subscription]struct{}{}
	}
	f.subs[s] = struct{}{}
}

// Remove removes s.
func (f *Fanout) Remove(s *Subscription) { delete(f.subs, s) }

// Len is the number of subscriptions.
func (f *Fanout) Len() int { return len(f.subs) }

// Broadcast delivers m to every subscription; subscriptions of closed clients are
// removed, since they will never read again.
func (f *Fanout) Broadcast(m *Message) {
	for s := range f.subs {
		if !s.Deliver(m) {
			delete(f.subs, s)
		}
	}
}
