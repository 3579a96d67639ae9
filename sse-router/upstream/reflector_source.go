package upstream

import (
	"context"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// source is what l's Reflector lists and watches: l's client with l's selectors, each
// request counted in the router's metrics and each failure reported through store. The
// Reflector retries some failures on its own without a word (connection refused, 429, an
// error in a watch's stream) and reports the rest to a handler only an informer can set;
// seeing every request here covers both.
func (l *listWatch) source(store *reflectorStore) cache.ListerWatcher {
	return listAndWatch{&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l.selectors(&opts)
			l.metrics.Request(l.kind, "list")
			obj, err := l.lw.ListWithContext(ctx, opts)
			// A 410 here is the Reflector asking for a version that is gone: it lists
			// again at once from the latest.
			if err != nil && ctx.Err() == nil && !isGone(err) {
				store.fail(fmt.Errorf("list: %w", err))
			}
			return obj, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			l.selectors(&opts)
			w, err := l.lw.WatchWithContext(ctx, opts)
			if err != nil {
				// A 410 is the watch not resuming: the Reflector lists again.
				if ctx.Err() == nil && !isGone(err) {
					store.fail(fmt.Errorf("watch: %w", err))
				}
				return nil, err
			}
			return newCountedWatch(ctx, w, l.metrics.UpstreamOpen(l.kind, "watch"), store.fail), nil
		},
	}}
}

func (l *listWatch) selectors(opts *metav1.ListOptions) {
	opts.LabelSelector, opts.FieldSelector = l.labelSelector, l.fieldSelector
}

// listAndWatch keeps the Reflector to a list then watches, not the streaming list it would
// otherwise try first (WatchListClient): a topic's state comes from one list, which the
// router's metrics count and its benchmarks compare.
type listAndWatch struct{ *cache.ListWatch }

// IsWatchListSemanticsUnSupported is how client-go lets a client opt out of streaming
// lists.
func (listAndWatch) IsWatchListSemanticsUnSupported() bool { return true }

func isGone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

// countedWatch is an open watch as the Reflector sees it: counted open in the metrics
// until stopped, and with the errors in its stream reported (the Reflector ends such a
// watch and lists again after a backoff, logging at most).
type countedWatch struct {
	in       watch.Interface
	out      chan watch.Event
	done     chan struct{}
	stopOnce sync.Once
	closed   func()
}

// newCountedWatch forwards in's events until ctx ends or the watch is stopped; closed is
// called once when it is stopped, fail with each error in its stream.
func newCountedWatch(ctx context.Context, in watch.Interface, closed func(), fail func(error)) *countedWatch {
	w := &countedWatch{in: in, out: make(chan watch.Event), done: make(chan struct{}), closed: closed}
	go w.forward(ctx, fail)
	return w
}

func (w *countedWatch) forward(ctx context.Context, fail func(error)) {
	defer close(w.out)
	for {
		var ev watch.Event
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case e, ok := <-w.in.ResultChan():
			if !ok {
				return
			}
			ev = e
		}
		if ev.Type == watch.Error {
			// A 410 is not a failure: the watch cannot resume, the Reflector lists again.
			if err := apierrors.FromObject(ev.Object); !isGone(err) && ctx.Err() == nil {
				fail(fmt.Errorf("watch: %w", err))
			}
		}
		select {
		case w.out <- ev:
		case <-ctx.Done():
			return
		case <-w.done:
			return
		}
	}
}

// ResultChan implements watch.Interface.
func (w *countedWatch) ResultChan() <-chan watch.Event { return w.out }

// Stop implements watch.Interface.
func (w *countedWatch) Stop() {
	w.stopOnce.Do(func() {
		close(w.done)
		w.in.Stop()
		w.closed()
	})
}
