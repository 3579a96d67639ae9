package upstream

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// typedListWatcher is what a typed client of one namespace's objects offers.
type typedListWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// listWatcherFor wraps a typed client, such as Pods(ns), for a listWatch.
func listWatcherFor[L runtime.Object](c typedListWatcher[L]) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l, err := c.List(ctx, opts)
			if err != nil {
				return nil, err // not a typed nil in an interface
			}
			return l, nil
		},
		WatchFuncWithContext: c.Watch,
	}
}

// watchHandler receives what a listWatch sees. Calls never overlap, and none comes after
// run has returned.
type watchHandler interface {
	// replace is a full list: the first one, or a relist after the watch could not resume.
	replace(items []runtime.Object, rv string, relist bool)
	// event is one change.
	event(t watch.EventType, obj runtime.Object, rv string)
	// progress is a bookmark: nothing changed up to rv.
	progress(rv string)
	// failing reports an upstream failure (nil when it has recovered).
	failing(err error)
}

// listWatch is the upstream of every watch topic: a client-go Reflector, which lists,
// watches from the list's resourceVersion, resumes from the last resourceVersion seen when
// a watch ends, and lists again only when the API server no longer has that version (410
// Gone / Expired). So subscribers see every change once, across API server restarts and
// watch timeouts.
type listWatch struct {
	kind          string
	lw            *cache.ListWatch
	labelSelector string
	fieldSelector string
	metrics       *hub.Metrics
	log           *slog.Logger
	// backoff bounds the wait between failed attempts.
	minBackoff, maxBackoff time.Duration
}

// run feeds h until ctx ends.
func (l *listWatch) run(ctx context.Context, h watchHandler) {
	store := &reflectorStore{h: h, kind: l.kind, metrics: l.metrics, log: l.log}
	defer store.stop()
	backoff := newBackoff(l.minBackoff, l.maxBackoff)
	r := cache.NewReflectorWithOptions(l.source(store), nil, store, cache.ReflectorOptions{
		Name:            "sse-router/" + l.kind,
		TypeDescription: l.kind,
		Backoff:         &backoff,
	})
	r.RunWithContext(ctx)
}
