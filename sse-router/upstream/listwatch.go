package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// listWatcher lists and watches one kind of object in one namespace (typed clients wrap
// into it).
type listWatcher struct {
	list  func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	watch func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// typedListWatcher is what a typed client of one namespace's objects offers.
type typedListWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// listWatcherFor wraps a typed client, such as Pods(ns), into a listWatcher.
func listWatcherFor[L runtime.Object](c typedListWatcher[L]) listWatcher {
	return listWatcher{
		list: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			l, err := c.List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return l, nil
		},
		watch: c.Watch,
	}
}

// watchHandler receives what a listWatch loop sees. Calls come from one goroutine.
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

// listWatch is the loop behind every watch topic: list, then watch from the list's
// resourceVersion, and when the watch ends resume from the last resourceVersion seen; only
// when the API server no longer has that version (410 Gone / Expired) list again. So
// subscribers see every change once, across API server restarts and watch timeouts.
type listWatch struct {
	kind          string
	lw            listWatcher
	labelSelector string
	fieldSelector string
	metrics       *hub.Metrics
	log           *slog.Logger
	// backoff bounds the wait between failed attempts.
	minBackoff, maxBackoff time.Duration
}

func (l *listWatch) run(ctx context.Context, h watchHandler) {
	var (
		rv       string
		listed   bool
		needList = true
		backoff  = l.minBackoff
		failed   error
	)
	fail := func(err error) {
		l.metrics.Error(l.kind)
		if failed == nil || failed.Error() != err.Error() {
			l.log.Warn("upstream failed", "kind", l.kind, "err", err)
			h.failing(err)
		}
		failed = err
		sleep(ctx, jitter(backoff))
		backoff = min(backoff*2, l.maxBackoff)
	}
	recovered := func() {
		if failed != nil {
			failed = nil
			h.failing(nil)
		}
		backoff = l.minBackoff
	}
	for ctx.Err() == nil {
		if needList {
			l.metrics.Request(l.kind, "list")
			obj, err := l.lw.list(ctx, metav1.ListOptions{LabelSelector: l.labelSelector, FieldSelector: l.fieldSelector})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				fail(fmt.Errorf("list: %w", err))
				continue
			}
			items, err := meta.ExtractList(obj)
			if err != nil {
				fail(fmt.Errorf("list: %w", err))
				continue
			}
			lm, err := meta.ListAccessor(obj)
			if err != nil {
				fail(fmt.Errorf("list: %w", err))
				continue
			}
			rv = lm.GetResourceVersion()
			h.replace(items, rv, listed)
			listed, needList = true, false
			recovered()
		}
		// The API server ends watches after a while anyway; asking for a random 5–10 min
		// keeps many topics from reconnecting at once.
		timeout := int64(300 + rand.IntN(300))
		w, err := l.lw.watch(ctx, metav1.ListOptions{
			LabelSelector: l.labelSelector, FieldSelector: l.fieldSelector,
			ResourceVersion: rv, AllowWatchBookmarks: true, TimeoutSeconds: &timeout,
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if isGone(err) {
				needList = true
				continue
			}
			fail(fmt.Errorf("watch: %w", err))
			continue
		}
		closed := l.metrics.UpstreamOpen(l.kind, "watch")
		var gone, sawEvent bool
		var werr error
	events:
		for {
			var ev watch.Event
			select {
			case <-ctx.Done():
				break events
			case e, ok := <-w.ResultChan():
				if !ok {
					break events
				}
				ev = e
			}
			switch ev.Type {
			case watch.Added, watch.Modified, watch.Deleted:
				m, err := meta.Accessor(ev.Object)
				if err != nil {
					continue
				}
				rv = m.GetResourceVersion()
				h.event(ev.Type, ev.Object, rv)
			case watch.Bookmark:
				if m, err := meta.Accessor(ev.Object); err == nil {
					rv = m.GetResourceVersion()
					h.progress(rv)
				}
			case watch.Error:
				// The API server ends a watch after an error: do not wait for it.
				err := apierrors.FromObject(ev.Object)
				if isGone(err) {
					gone = true
				} else {
					werr = err
				}
				break events
			}
			if !sawEvent {
				sawEvent = true
				recovered()
			}
		}
		w.Stop()
		closed()
		switch {
		case ctx.Err() != nil:
			return
		case gone:
			needList = true
		case werr != nil:
			fail(fmt.Errorf("watch: %w", werr))
		case !sawEvent:
			// A watch that ended without a single event (not even a bookmark) may mean the
			// API server is going away: do not spin.
			sleep(ctx, jitter(l.minBackoff))
		}
	}
}

func isGone(err error) bool {
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}

func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
