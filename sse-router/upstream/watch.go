package upstream

import (
	"cmp"
	"context"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// watchTopic is a shared watch of one kind of object in one namespace with one selector:
// an informer-like cache of the objects, the current resourceVersion, and a ring of the
// last changes. A new subscriber gets a snapshot from the cache; a returning one (with
// Last-Event-ID, a resourceVersion) gets exactly the changes after it from the ring, or a
// snapshot when the ring no longer reaches back that far. Browsers never see a 410.
type watchTopic struct {
	loop    *listWatch
	prepare func(runtime.Object)

	changeFeed
	synced   bool
	items    map[string]runtime.Object
	snapshot *hub.Message // the encoded current state, until it changes
}

func newWatchTopic(loop *listWatch, prepare func(runtime.Object), replay int) *watchTopic {
	return &watchTopic{loop: loop, prepare: prepare, changeFeed: changeFeed{log: newChangeLog(replay)}, items: map[string]runtime.Object{}}
}

// changeLog is where a watch-fed topic stands (the last resourceVersion seen) and the
// changes it sent before, so that a subscriber coming back with a resourceVersion gets
// exactly what it missed. The topic's lock guards it.
type changeLog struct {
	rv        string
	rvNum     uint64
	rvNumeric bool
	ring      *ring[change] // positions are resourceVersions
	// base is the resourceVersion the ring starts after: the ring holds every change in
	// (base, rvNum].
	base uint64
}

func newChangeLog(replay int) changeLog { return changeLog{ring: newRing[change](replay)} }

func (l *changeLog) setRV(rv string) {
	l.rv = rv
	n, err := strconv.ParseUint(rv, 10, 64)
	l.rvNum, l.rvNumeric = n, err == nil
}

// restart starts the log afresh at rv, after a list: what came before it is unknown.
func (l *changeLog) restart(rv string) {
	l.setRV(rv)
	l.ring.reset()
	l.base = l.rvNum
}

// record keeps msg, the change at rv.
func (l *changeLog) record(rv string, msg *hub.Message) {
	l.setRV(rv)
	if !l.rvNumeric {
		// Positions that are not numbers cannot be compared: nobody can resume from
		// before this change, only from the full state.
		l.ring.reset()
		return
	}
	if old, evicted := l.ring.push(change{pos: l.rvNum, msg: msg}); evicted {
		l.base = old.pos
	}
}

// skip moves the log to rv without a change sent (a bookmark, or a change nobody sees).
func (l *changeLog) skip(rv string) {
	prev := l.rvNum
	l.setRV(rv)
	if !l.rvNumeric || l.rvNum < prev {
		l.ring.reset()
		l.base = l.rvNum
	}
}

// since returns what a subscriber resuming with r missed (nil when nothing); ok is false
// when the log cannot tell and the subscriber needs the full state.
func (l *changeLog) since(r api.Resume) (msg *hub.Message, ok bool) {
	if !r.HasRV || !l.rvNumeric || r.RV < l.base || r.RV > l.rvNum {
		return nil, false
	}
	return changesAfter(l.ring, r.RV), true
}

// Run follows the upstream until ctx ends.
func (t *watchTopic) Run(ctx context.Context) {
	t.loop.run(ctx, t)
}

// Subscribe implements Topic.
func (t *watchTopic) Subscribe(_ context.Context, s *hub.Subscription, j Join) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var msg *hub.Message
	if t.synced { // else the first list is on its way: its snapshot goes to everyone waiting
		var ok bool
		if msg, ok = t.log.since(j.Resume); !ok {
			msg = t.snapshotLocked()
		}
	}
	t.joinLocked(s, msg)
	return nil
}

func (t *watchTopic) snapshotLocked() *hub.Message {
	if t.snapshot == nil {
		t.snapshot = hub.NewMessage(false, hub.NewEvent(api.EventSnapshot, t.log.rv, encodeList(api.EventSnapshot, t.log.rv, t.items)))
	}
	return t.snapshot
}

func encodeList(typ, rv string, items map[string]runtime.Object) []byte {
	keys := make([]string, 0, len(items))
	for k := range items {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	p := listPayload{Type: typ, ResourceVersion: rv, Items: make([]any, 0, len(keys))}
	for _, k := range keys {
		p.Items = append(p.Items, items[k])
	}
	return api.Marshal(p)
}

func objectKey(obj runtime.Object) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetNamespace() + "/" + m.GetName()
}

func (t *watchTopic) replace(items []runtime.Object, rv string, relist bool) {
	m := make(map[string]runtime.Object, len(items))
	for _, obj := range items {
		t.prepare(obj)
		m[objectKey(obj)] = obj
	}
	typ := api.EventSnapshot
	if relist {
		typ = api.EventRelist
	}
	msg := hub.NewMessage(false, hub.NewEvent(typ, rv, encodeList(typ, rv, m)))

	t.mu.Lock()
	defer t.mu.Unlock()
	if relist && sameVersions(t.items, m) {
		// Nothing changed while the watch was down (the Reflector relists after any
		// broken watch, not only after a 410): subscribers have this state, and the ring
		// still holds exactly the changes up to rv.
		t.log.skip(rv)
		return
	}
	t.items = m
	t.log.restart(rv)
	if relist {
		t.snapshot = nil
	} else {
		t.snapshot = msg
	}
	t.synced = true
	t.fan.Broadcast(msg)
}

// sameVersions reports whether a and b hold the same objects at the same
// resourceVersions.
func sameVersions(a, b map[string]runtime.Object) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || resourceVersion(x) != resourceVersion(y) {
			return false
		}
	}
	return true
}

func resourceVersion(obj runtime.Object) string {
	m, err := meta.Accessor(obj)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}

func (t *watchTopic) event(typ watch.EventType, obj runtime.Object, rv string) {
	t.prepare(obj)
	name := strings.ToLower(string(typ))
	msg := hub.NewMessage(false, hub.NewEvent(name, rv, api.Marshal(objectPayload{Type: string(typ), Object: obj})))

	t.mu.Lock()
	defer t.mu.Unlock()
	key := objectKey(obj)
	if typ == watch.Deleted {
		delete(t.items, key)
	} else {
		t.items[key] = obj
	}
	t.log.record(rv, msg)
	t.snapshot = nil
	t.fan.Broadcast(msg)
}

// changeFeed is what the watch topics share: their audience and the log of changes
// a resuming subscriber is given, with the upstream's progress and failures kept in it.
type changeFeed struct {
	audience
	log changeLog
}

func (f *changeFeed) progress(rv string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log.skip(rv)
}

func (f *changeFeed) failing(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		f.failure = nil
		return
	}
	f.failLocked(hub.NewMessage(false, errorEvent(f.log.rv, err, true)))
}

// objects returns the cached objects sorted by namespace/name.
func (t *watchTopic) objects() []runtime.Object {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]runtime.Object, 0, len(t.items))
	for _, o := range t.items {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b runtime.Object) int { return cmp.Compare(objectKey(a), objectKey(b)) })
	return out
}
