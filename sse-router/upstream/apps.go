package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// AppChange is an app's summary as it is now; Summary is nil when the app is gone.
type AppChange struct {
	App     string
	Summary json.RawMessage
}

// AppsSource is where app summaries live.
type AppsSource interface {
	// Watch calls onChange with every change of a summary in the namespace until ctx ends
	// or the source fails (it returns the failure). It calls ready once changes are being
	// received, so that a snapshot read afterwards misses none.
	Watch(ctx context.Context, cluster, namespace string, ready func(), onChange func(AppChange)) error
	// Snapshot returns every summary of the namespace.
	Snapshot(ctx context.Context, cluster, namespace string) ([]AppChange, error)
}

// appsTopic is the live app list of one namespace: a snapshot of the summaries, then
// each change. Ids are "<epoch>.<seq>": a returning subscriber of the same topic gets
// the changes it missed from the ring, anyone else a snapshot.
type appsTopic struct {
	src         AppsSource
	cluster, ns string
	metrics     *hub.Metrics
	log         *slog.Logger
	backoff     wait.Backoff
	epoch       string

	audience
	synced bool
	apps   map[string]json.RawMessage
	seq    uint64
	ring   *ring[change] // positions are seqs
	base   uint64
}

type appPayload struct {
	Type    string          `json:"type"`
	App     string          `json:"app"`
	Summary json.RawMessage `json:"summary,omitempty"`
}

func newAppsTopic(src AppsSource, cluster, ns string, m *hub.Metrics, log *slog.Logger, backoff [2]time.Duration) *appsTopic {
	return &appsTopic{
		src: src, cluster: cluster, ns: ns, metrics: m, log: log, backoff: newBackoff(backoff[0], backoff[1]),
		epoch: strconv.FormatInt(time.Now().UnixNano(), 36),
		apps:  map[string]json.RawMessage{}, ring: newRing[change](1000),
	}
}

func (t *appsTopic) id(seq uint64) string { return t.epoch + "." + strconv.FormatUint(seq, 10) }

// Run subscribes to the summaries' changes, reads a snapshot, and follows; after a
// failure it does so again and tells subscribers to replace their list (relist).
func (t *appsTopic) Run(ctx context.Context) {
	backoff := t.backoff
	delay := wait.DelayFunc(func() time.Duration { return backoff.Step() })
	_ = delay.Until(ctx, true, true, func(ctx context.Context) (bool, error) {
		if t.follow(ctx) {
			backoff = t.backoff // it worked: the next failure waits the least again
		}
		return false, nil
	})
}

// follow subscribes and follows until ctx ends or the source fails; ok says whether a
// snapshot came through.
func (t *appsTopic) follow(parent context.Context) (ok bool) {
	// A failed snapshot ends the subscription too, so that it is retried: changes alone
	// would never make a list.
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	var (
		mu       sync.Mutex
		pending  []AppChange
		snapshot bool
	)
	onChange := func(c AppChange) {
		mu.Lock()
		if !snapshot {
			pending = append(pending, c)
			mu.Unlock()
			return
		}
		mu.Unlock()
		t.apply(c)
	}
	ready := func() {
		t.metrics.Request(string(api.KindApps), "list")
		items, err := t.src.Snapshot(ctx, t.cluster, t.ns)
		if err != nil {
			cancel(fmt.Errorf("app summaries: %w", err))
			return
		}
		mu.Lock()
		defer mu.Unlock()
		t.replace(items)
		// Changes received while reading the snapshot may be older or newer than it;
		// a summary is the app's whole state, so applying them again is harmless.
		for _, c := range pending {
			t.apply(c)
		}
		pending, snapshot = nil, true
	}
	closed := t.metrics.UpstreamOpen(string(api.KindApps), "subscribe")
	err := t.src.Watch(ctx, t.cluster, t.ns, ready, onChange)
	closed()
	mu.Lock()
	ok = snapshot
	mu.Unlock()
	if parent.Err() != nil {
		return ok
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	} else if err == nil {
		err = fmt.Errorf("app summaries: subscription ended")
	}
	t.metrics.Error(string(api.KindApps))
	t.fail(err)
	return ok
}

func (t *appsTopic) replace(items []AppChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	apps := make(map[string]json.RawMessage, len(items))
	for _, c := range items {
		if c.Summary != nil {
			apps[c.App] = c.Summary
		}
	}
	relist := t.synced
	t.apps, t.synced, t.failure = apps, true, nil
	t.seq++
	t.ring.reset()
	t.base = t.seq
	typ := api.EventSnapshot
	if relist {
		typ = api.EventRelist
	}
	t.fan.Broadcast(hub.NewMessage(false, hub.NewEvent(typ, t.id(t.seq), t.encodeListLocked(typ))))
}

func (t *appsTopic) encodeListLocked(typ string) []byte {
	names := make([]string, 0, len(t.apps))
	for n := range t.apps {
		names = append(names, n)
	}
	slices.Sort(names)
	p := listPayload{Type: typ, Items: make([]any, 0, len(names))}
	for _, n := range names {
		p.Items = append(p.Items, appPayload{Type: api.EventApp, App: n, Summary: t.apps[n]})
	}
	return api.Marshal(p)
}

func (t *appsTopic) apply(c AppChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, had := t.apps[c.App]
	typ := api.EventApp
	if c.Summary == nil {
		if !had {
			return
		}
		delete(t.apps, c.App)
		typ = api.EventDeleted
	} else {
		if had && string(old) == string(c.Summary) {
			return
		}
		t.apps[c.App] = c.Summary
	}
	t.seq++
	msg := hub.NewMessage(false, hub.NewEvent(typ, t.id(t.seq), api.Marshal(appPayload{Type: typ, App: c.App, Summary: c.Summary})))
	if old, ok := t.ring.push(change{pos: t.seq, msg: msg}); ok {
		t.base = old.pos
	}
	t.fan.Broadcast(msg)
}

func (t *appsTopic) fail(err error) {
	t.log.Warn("app summaries upstream failed", "namespace", t.ns, "err", err)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failLocked(hub.NewMessage(false, errorEvent(t.id(t.seq), err, true)))
}

// Subscribe implements Topic.
func (t *appsTopic) Subscribe(_ context.Context, s *hub.Subscription, j Join) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var msg *hub.Message
	if t.synced {
		epoch, seqStr, _ := strings.Cut(j.Resume.ID, ".")
		seq, err := strconv.ParseUint(seqStr, 10, 64)
		if j.Resume.Set && epoch == t.epoch && err == nil && seq >= t.base && seq <= t.seq {
			msg = changesAfter(t.ring, seq)
		} else {
			msg = hub.NewMessage(false, hub.NewEvent(api.EventSnapshot, t.id(t.seq), t.encodeListLocked(api.EventSnapshot)))
		}
	}
	t.joinLocked(s, msg)
	return nil
}
