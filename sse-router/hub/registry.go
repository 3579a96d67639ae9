package hub

import (
	"context"
	"sync"
	"time"
)

// Upstream is a shared source of events: it runs from its creation until its context is
// cancelled, which happens a linger time after its last user released it.
type Upstream interface {
	Run(ctx context.Context)
}

// Registry keeps one upstream per key, reference-counted. The last release does not stop
// the upstream at once: it lingers, so that a browser reloading a page (or reconnecting)
// finds its upstream and its replay buffer still there.
type Registry[U Upstream] struct {
	kind    string
	linger  time.Duration
	ctx     context.Context
	metrics *Metrics

	mu      sync.Mutex
	entries map[string]*regEntry[U]
	wg      sync.WaitGroup
}

type regEntry[U Upstream] struct {
	up     U
	refs   int
	cancel context.CancelFunc
	timer  *time.Timer
}

// NewRegistry makes a registry of upstreams of one kind, run under ctx: cancelling ctx
// stops them all (Wait waits for them).
func NewRegistry[U Upstream](ctx context.Context, kind string, linger time.Duration, m *Metrics) *Registry[U] {
	return &Registry[U]{kind: kind, linger: linger, ctx: ctx, metrics: m, entries: map[string]*regEntry[U]{}}
}

// Acquire returns the upstream for key, creating and starting it with create if there is
// none. Call release (once) when done with it.
func (r *Registry[U]) Acquire(key string, create func() U) (up U, release func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[key]
	if ok {
		e.refs++
		if e.timer != nil {
			e.timer.Stop()
			e.timer = nil
		}
	} else {
		ctx, cancel := context.WithCancel(r.ctx)
		e = &regEntry[U]{up: create(), refs: 1, cancel: cancel}
		r.entries[key] = e
		if r.metrics != nil {
			r.metrics.Topics.WithLabelValues(r.kind).Inc()
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			e.up.Run(ctx)
		}()
	}
	var once sync.Once
	return e.up, func() { once.Do(func() { r.release(key, e) }) }
}

func (r *Registry[U]) release(key string, e *regEntry[U]) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.refs--
	if e.refs > 0 {
		return
	}
	if r.linger <= 0 {
		r.remove(key, e)
		return
	}
	e.timer = time.AfterFunc(r.linger, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if e.refs == 0 && r.entries[key] == e {
			r.remove(key, e)
		}
	})
}

func (r *Registry[U]) remove(key string, e *regEntry[U]) {
	delete(r.entries, key)
	e.cancel()
	if r.metrics != nil {
		r.metrics.Topics.WithLabelValues(r.kind).Dec()
	}
}

// Len is the number of upstreams alive, lingering ones included.
func (r *Registry[U]) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// Wait waits until every upstream has returned; cancel the registry's context first.
func (r *Registry[U]) Wait() { r.wg.Wait() }
