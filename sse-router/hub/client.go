package hub

import (
	"sync"
	"time"
)

// Reasons a client's stream is closed by the router.
const (
	// ReasonSlow: the client did not read fast enough and its queue filled up, or what
	// it was sent stayed unsent too long.
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

// Client is the router's side of one browser stream: a bounded queue of deliveries that
// its writer drains. Topics never wait for a client: when the queue is full the client is
// closed (as slow) and its writer tells the browser why.
//
// An idle client holds no queue memory: the queue is allocated when something is
// delivered and given back once it is drained, so that tens of thousands of open streams
// cost little more than their sockets.
type Client struct {
	mu     sync.Mutex
	queue  []Delivery
	max    int
	closed bool
	reason string

	// wake is called, outside the client's lock, when the queue turns non-empty or the
	// client is closed: the writer's cue.
	wake    func()
	signal  chan struct{}
	done    chan struct{}
	metrics *Metrics
}

// NewClient makes a client whose queue holds queueSize deliveries. m may be nil.
// Its writer learns of work on Signal.
func NewClient(queueSize int, m *Metrics) *Client {
	if queueSize < 1 {
		queueSize = 1
	}
	return &Client{max: queueSize, signal: make(chan struct{}, 1), done: make(chan struct{}), metrics: m}
}

// OnWake makes wake the writer's cue instead of Signal; it is called without the
// client's lock held, possibly under a topic's, so it must not block for long. Set it
// before anything is delivered.
func (c *Client) OnWake(wake func()) { c.wake = wake }

// Signal receives a value when the queue turned non-empty or the client closed.
func (c *Client) Signal() <-chan struct{} { return c.signal }

func (c *Client) notify() {
	if c.wake != nil {
		c.wake()
		return
	}
	select {
	case c.signal <- struct{}{}:
	default:
	}
}

// Take moves what is queued to dst, which it returns appended to.
func (c *Client) Take(dst []Delivery) []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	dst = append(dst, c.queue...)
	clear(c.queue)
	if cap(c.queue) > 16 {
		c.queue = nil // shrink back after a burst
	} else {
		c.queue = c.queue[:0]
	}
	return dst
}

// Done is closed when the client is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Reason says why the client was closed; it is set before Done is closed.
func (c *Client) Reason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// Closed says whether the client is closed.
func (c *Client) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes the client for reason; only the first call counts. It reports whether
// this call closed it.
func (c *Client) Close(reason string) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closeLocked(reason)
	c.mu.Unlock()
	c.notify()
	return true
}

func (c *Client) closeLocked(reason string) {
	c.closed = true
	c.reason = reason
	clear(c.queue)
	c.queue = nil
	close(c.done)
	if reason == ReasonSlow && c.metrics != nil {
		c.metrics.SlowClientsDropped.Inc()
	}
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
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.max {
		c.closeLocked(ReasonSlow)
		c.mu.Unlock()
		c.notify()
		return false
	}
	first := len(c.queue) == 0
	if first && c.queue == nil {
		c.queue = make([]Delivery, 0, 2)
	}
	c.queue = append(c.queue, Delivery{Sub: s, Msg: m})
	c.mu.Unlock()
	if first {
		c.notify()
	}
	return true
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

// Next takes the oldest queued delivery, waiting up to timeout for one; for readers that
// take one at a time. It reports false when none came or the client is closed.
func (c *Client) Next(timeout time.Duration) (Delivery, bool) {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			d := c.queue[0]
			c.queue[0] = Delivery{}
			c.queue = c.queue[1:]
			if len(c.queue) == 0 {
				c.queue = nil
			}
			c.mu.Unlock()
			return d, true
		}
		closed := c.closed
		c.mu.Unlock()
		wait := time.Until(deadline)
		if closed || wait <= 0 {
			return Delivery{}, false
		}
		t := time.NewTimer(wait)
		select {
		case <-c.signal:
		case <-t.C:
		}
		t.Stop()
	}
}
