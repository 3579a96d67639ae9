package authz

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// answerCache remembers answers for a short time, bounded in size (least recently used
// answers go first), and lets concurrent askers of the same question share one request:
// a page opening fifty streams at once costs one TokenReview, not fifty.
type answerCache[V any] struct {
	max int
	now func() time.Time

	mu       sync.Mutex
	order    *list.List // of *cacheEntry[V], most recently used in front
	entries  map[string]*list.Element
	inflight map[string]*flight[V]
}

type cacheEntry[V any] struct {
	key     string
	value   V
	expires time.Time
}

type flight[V any] struct {
	done  chan struct{}
	value V
	ttl   time.Duration
	err   error
}

func newAnswerCache[V any](max int, now func() time.Time) *answerCache[V] {
	return &answerCache[V]{
		max:      max,
		now:      now,
		order:    list.New(),
		entries:  map[string]*list.Element{},
		inflight: map[string]*flight[V]{},
	}
}

// get returns the cached answer for key or asks load, which also says how long its answer
// may be reused. Errors are not remembered. load runs with a context detached from the
// asker's cancellation (bounded by loadTimeout), because other askers may be waiting on it.
func (c *answerCache[V]) get(ctx context.Context, key string, loadTimeout time.Duration,
	load func(ctx context.Context) (V, time.Duration, error)) (v V, cached bool, err error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry[V])
		if c.now().Before(e.expires) {
			c.order.MoveToFront(el)
			c.mu.Unlock()
			return e.value, true, nil
		}
		c.order.Remove(el)
		delete(c.entries, key)
	}
	if f, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.value, false, f.err
		case <-ctx.Done():
			return v, false, ctx.Err()
		}
	}
	f := &flight[V]{done: make(chan struct{})}
	c.inflight[key] = f
	c.mu.Unlock()

	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
	f.value, f.ttl, f.err = load(lctx)
	cancel()

	c.mu.Lock()
	delete(c.inflight, key)
	if f.err == nil && f.ttl > 0 && c.max > 0 {
		c.entries[key] = c.order.PushFront(&cacheEntry[V]{key: key, value: f.value, expires: c.now().Add(f.ttl)})
		for c.order.Len() > c.max {
			last := c.order.Back()
			c.order.Remove(last)
			delete(c.entries, last.Value.(*cacheEntry[V]).key)
		}
	}
	c.mu.Unlock()
	close(f.done)
	return f.value, false, f.err
}

func (c *answerCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
