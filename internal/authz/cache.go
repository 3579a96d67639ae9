package authz

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/cache"
)

// answerCache remembers answers for a short time, bounded in size (least recently used
// answers go first), and lets concurrent askers of the same question share one request:
// a page opening fifty streams at once costs one TokenReview, not fifty.
type answerCache[V any] struct {
	// mu orders lookups in answers against inflight, so that an answer is either cached
	// or being loaded, never asked twice at once.
	mu       sync.Mutex
	answers  *cache.LRUExpireCache
	inflight map[string]*flight[V]
}

type flight[V any] struct {
	done   chan struct{}
	askers int // sharing this request; guarded by answerCache.mu
	value  V
	err    error
}

// clockFunc adapts Options.Now to the cache's clock.
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

func newAnswerCache[V any](size int, now func() time.Time) *answerCache[V] {
	return &answerCache[V]{
		answers:  cache.NewLRUExpireCacheWithClock(max(size, 1), clockFunc(now)),
		inflight: map[string]*flight[V]{},
	}
}

// get returns the cached answer for key or asks load, which also says how long its answer
// may be reused. Errors are not remembered. load runs in its own goroutine with a context
// detached from the asker's cancellation, because other askers may be waiting on it and its
// answer is worth caching for the next ones; load must bound its own time. Each asker waits
// only as long as its own ctx allows.
func (c *answerCache[V]) get(ctx context.Context, key string,
	load func(ctx context.Context) (V, time.Duration, error)) (v V, cached bool, err error) {
	c.mu.Lock()
	if a, ok := c.answers.Get(key); ok {
		c.mu.Unlock()
		return a.(V), true, nil
	}
	f, ok := c.inflight[key]
	if !ok {
		f = &flight[V]{done: make(chan struct{})}
		c.inflight[key] = f
		go c.load(context.WithoutCancel(ctx), key, f, load)
	}
	f.askers++
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.value, false, f.err
	case <-ctx.Done():
		return v, false, fmt.Errorf("waiting for a review: %w", ctx.Err())
	}
}

func (c *answerCache[V]) load(ctx context.Context, key string, f *flight[V],
	load func(ctx context.Context) (V, time.Duration, error)) {
	value, ttl, err := load(ctx)
	c.mu.Lock()
	f.value, f.err = value, err
	if err == nil && ttl > 0 {
		c.answers.Add(key, value, ttl)
	}
	delete(c.inflight, key)
	c.mu.Unlock()
	close(f.done)
}

// askers is how many asked key while it is being loaded (0 when it is not).
func (c *answerCache[V]) askers(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.inflight[key]; ok {
		return f.askers
	}
	return 0
}

func (c *answerCache[V]) len() int {
	return len(c.answers.Keys())
}
