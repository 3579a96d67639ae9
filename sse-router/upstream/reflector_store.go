package upstream

import (
	"fmt"
	"log/slog"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// reflectorStore is a listWatch's Reflector store. It keeps no objects (the topics keep
// what they show): it hands each list, change and bookmark to a watchHandler, with the
// resourceVersion the topics resume from, and tells it of failures and recoveries.
type reflectorStore struct {
	h       watchHandler
	kind    string
	metrics *hub.Metrics
	log     *slog.Logger

	// mu keeps calls to h apart: the Reflector lists on a goroutine of its own, which it
	// does not wait for once its context has ended.
	mu      sync.Mutex
	stopped bool  // run has returned: h hears no more
	listed  bool  // a list has been handed over: the next is a relist
	failed  error // the failure h was last told of, until it works again
}

var (
	_ cache.ReflectorStore         = (*reflectorStore)(nil)
	_ cache.ReflectorBookmarkStore = (*reflectorStore)(nil)
)

// Replace implements cache.ReflectorStore: a list.
func (s *reflectorStore) Replace(items []any, rv string) error {
	objs := make([]runtime.Object, 0, len(items))
	for _, it := range items {
		obj, ok := it.(runtime.Object)
		if !ok {
			return fmt.Errorf("listed a %T, not an API object", it)
		}
		objs = append(objs, obj)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.h.replace(objs, rv, s.listed)
	s.listed = true
	s.workingLocked()
	return nil
}

// Add implements cache.ReflectorStore.
func (s *reflectorStore) Add(obj any) error { return s.change(watch.Added, obj) }

// Update implements cache.ReflectorStore.
func (s *reflectorStore) Update(obj any) error { return s.change(watch.Modified, obj) }

// Delete implements cache.ReflectorStore.
func (s *reflectorStore) Delete(obj any) error { return s.change(watch.Deleted, obj) }

// Resync implements cache.ReflectorStore; listWatch asks for no resyncs.
func (s *reflectorStore) Resync() error { return nil }

// Bookmark implements cache.ReflectorBookmarkStore.
func (s *reflectorStore) Bookmark(rv string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.h.progress(rv)
	s.workingLocked()
	return nil
}

func (s *reflectorStore) change(typ watch.EventType, obj any) error {
	o, ok := obj.(runtime.Object)
	if !ok {
		return fmt.Errorf("watched a %T, not an API object", obj)
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.h.event(typ, o, m.GetResourceVersion())
	s.workingLocked()
	return nil
}

// fail records a failed upstream request or a broken watch; h hears of each new failure
// once, however many retries fail the same way.
func (s *reflectorStore) fail(err error) {
	s.metrics.Error(s.kind)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if s.failed == nil || s.failed.Error() != err.Error() {
		s.log.Warn("upstream failed", "kind", s.kind, "err", err)
		s.h.failing(err)
	}
	s.failed = err
}

// workingLocked tells h that a failure is over: data came through.
func (s *reflectorStore) workingLocked() {
	if s.failed != nil {
		s.failed = nil
		s.h.failing(nil)
	}
}

// stop ends the calls to h.
func (s *reflectorStore) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
}
