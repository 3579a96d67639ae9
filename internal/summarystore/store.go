// Package summarystore keeps the per-app summaries of the app list in Redis: it applies
// the watcher's CloudEvents (internal/events) to them atomically with one Lua script per
// event, and reads them back. Summaries are exact under at-least-once delivery in any
// order: every event carries an object's whole state with an ordering key, the script
// keeps the newest state of each object (deletions as tombstones), and derives the app's
// summary from its objects in the same script. Snapshots (the full state at a revision)
// remove what is gone and rebuild everything after Redis lost its data. They are
// authoritative: a state stored before a round's listing began that claims a key above
// the round's revision (a key no cluster had produced yet: forged) is replaced by the
// round like an older one, so no ordering key, however great, outlives one round.
//
// Every key of one cluster shares the hash tag {<cluster>}, so that one script only
// touches one Redis Cluster slot.
package summarystore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

//go:embed apply.lua
var applySource string

var applyScript = redis.NewScript(applySource)

// Store reads and writes the summaries kept under one key prefix.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	// now is the store's clock: when entries are stored, compared with the time a
	// round's listing began (events.AppSnapshot.ListedAt).
	now func() time.Time
}

// New returns a Store using rdb with keys under prefix (e.g. "dwp:").
func New(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, now: time.Now}
}

// WithClock makes the store read the time from now rather than the system clock, and
// returns it. Tests use a fixed clock, so that the keyspace does not depend on when each
// event was applied.
func (s *Store) WithClock(now func() time.Time) *Store {
	s.now = now
	return s
}

// ClockSkew is how far the clocks of the watcher and of the task function's replicas may
// disagree. A round covers what was stored up to ClockSkew before its listing began; a
// state forged later than that is undone by the round after.
const ClockSkew = 2 * time.Second

// Channel is where every summary change is published (events.SummaryChannel).
func (s *Store) Channel() string { return events.SummaryChannel(s.prefix) }

// base is the key prefix of one cluster's data.
func (s *Store) base(cluster string) string { return s.prefix + "{" + cluster + "}:" }

// SummariesKey is the hash of a namespace's summaries (app → AppSummary JSON).
func (s *Store) SummariesKey(cluster, namespace string) string {
	return s.base(cluster) + "s:" + namespace
}

const (
	kindPod         = "p"
	kindWorkflow    = "w"
	kindApplication = "a"
)

func kindOf(snapshotKind string) (string, error) {
	switch snapshotKind {
	case events.KindPods:
		return kindPod, nil
	case events.KindWorkflows:
		return kindWorkflow, nil
	case events.KindApplications:
		return kindApplication, nil
	}
	return "", fmt.Errorf("unknown kind %q", snapshotKind)
}

// stamp writes a time as the script compares and formats times: the number
// YYYYMMDDhhmmss in UTC (0 for none), which orders as the times do and is exact as a Lua
// number.
func stamp(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	t = t.UTC()
	return int64(t.Year())*1e10 + int64(t.Month())*1e8 + int64(t.Day())*1e6 + int64(t.Hour())*1e4 + int64(t.Minute())*100 + int64(t.Second())
}

// The states stored per object: short member names, every member always present (the
// script reads them without checking).
type podState struct {
	Name        string `json:"n"`
	Phase       string `json:"ph"`
	Ready       bool   `json:"r"`
	Restarts    int32  `json:"rs"`
	Problem     string `json:"pb"`
	Terminating bool   `json:"t"`
	ChangedAt   int64  `json:"at"`
}

type workflowState struct {
	Name       string `json:"n"`
	Phase      string `json:"ph"`
	Task       string `json:"k"`
	Message    string `json:"m"`
	CreatedAt  int64  `json:"c"`
	StartedAt  int64  `json:"s"`
	FinishedAt int64  `json:"f"`
}

type applicationState struct {
	Name                string `json:"n"`
	Sync                string `json:"sy"`
	Health              string `json:"h"`
	HealthMessage       string `json:"hm"`
	Revision            string `json:"r"`
	OperationPhase      string `json:"op"`
	OperationMessage    string `json:"om"`
	OperationFinishedAt int64  `json:"of"`
}

func entry(ord events.Ordering, deleted bool, state any) (string, error) {
	if deleted {
		return ord.Key() + "T", nil
	}
	b, err := json.Marshal(state)
	if err != nil {
		return "", err
	}
	return ord.Key() + "L" + string(b), nil
}

func podEntry(p *events.Pod, deleted bool) (string, error) {
	return entry(p.Ordering, deleted, podState{
		Name: p.Name, Phase: p.Phase, Ready: p.Ready, Restarts: p.Restarts,
		Problem: p.Problem, Terminating: p.Terminating, ChangedAt: stamp(p.ChangedAt),
	})
}

func workflowEntry(w *events.Workflow, deleted bool) (string, error) {
	return entry(w.Ordering, deleted, workflowState{
		Name: w.Name, Phase: w.Phase, Task: w.Task, Message: w.Message,
		CreatedAt: stamp(w.CreatedAt), StartedAt: stamp(w.StartedAt), FinishedAt: stamp(w.FinishedAt),
	})
}

func applicationEntry(a *events.Application, deleted bool) (string, error) {
	return entry(a.Ordering, deleted, applicationState{
		Name: a.Name, Sync: a.Sync, Health: a.Health, HealthMessage: a.HealthMessage, Revision: a.Revision,
		OperationPhase: a.OperationPhase, OperationMessage: a.OperationMessage, OperationFinishedAt: stamp(a.OperationFinishedAt),
	})
}

// run runs the script: args are the operation, the kind, then the operation's own (see
// apply.lua); listedAt is a snapshot's (zero for an object's state).
func (s *Store) run(ctx context.Context, cluster string, listedAt time.Time, args ...any) (int, error) {
	if err := events.ValidateClusterName(cluster); err != nil {
		return 0, err
	}
	now := s.now()
	var cut int64
	if !listedAt.IsZero() {
		// A listing cannot begin after the snapshot is applied: a later time says nothing
		// more, and must not make a sender able to undo any state it likes.
		cut = max(min(listedAt.UnixMilli(), now.UnixMilli())-ClockSkew.Milliseconds(), 0)
	}
	all := append([]any{args[0], cluster, s.Channel(), args[1], now.UnixMilli(), cut}, args[2:]...)
	n, err := applyScript.Run(ctx, s.rdb, []string{s.base(cluster)}, all...).Int()
	if err != nil {
		return 0, fmt.Errorf("apply %s to the summaries: %w", args[0], err)
	}
	return n, nil
}

// ApplyPod applies a pod's state (or its deletion) and returns how many summaries changed
// (0 or 1). The pod must be valid (events.Pod.Validate).
func (s *Store) ApplyPod(ctx context.Context, cluster string, deleted bool, p events.Pod) (int, error) {
	e, err := podEntry(&p, deleted)
	if err != nil {
		return 0, err
	}
	return s.run(ctx, cluster, time.Time{}, "obj", kindPod, p.Namespace, p.App, p.UID, e)
}

// ApplyWorkflow applies a workflow's state (or its deletion).
func (s *Store) ApplyWorkflow(ctx context.Context, cluster string, deleted bool, w events.Workflow) (int, error) {
	e, err := workflowEntry(&w, deleted)
	if err != nil {
		return 0, err
	}
	return s.run(ctx, cluster, time.Time{}, "obj", kindWorkflow, w.Namespace, w.App, w.UID, e)
}

// ApplyApplication applies the state of an app's Argo CD Application (or its deletion).
func (s *Store) ApplyApplication(ctx context.Context, cluster string, deleted bool, a events.Application) (int, error) {
	e, err := applicationEntry(&a, deleted)
	if err != nil {
		return 0, err
	}
	return s.run(ctx, cluster, time.Time{}, "obj", kindApplication, a.Namespace, a.App, a.UID, e)
}

// ApplyAppSnapshot applies one app's snapshot of one kind.
func (s *Store) ApplyAppSnapshot(ctx context.Context, cluster string, snap events.AppSnapshot) (int, error) {
	kind, err := kindOf(snap.Kind)
	if err != nil {
		return 0, err
	}
	args := make([]any, 0, 5+2*(len(snap.Pods)+len(snap.Workflows)+len(snap.Applications)))
	args = append(args, "app", kind, snap.Namespace, snap.App, snap.Revision.Key())
	for i := range snap.Pods {
		e, err := podEntry(&snap.Pods[i], false)
		if err != nil {
			return 0, err
		}
		args = append(args, snap.Pods[i].UID, e)
	}
	for i := range snap.Workflows {
		e, err := workflowEntry(&snap.Workflows[i], false)
		if err != nil {
			return 0, err
		}
		args = append(args, snap.Workflows[i].UID, e)
	}
	for i := range snap.Applications {
		e, err := applicationEntry(&snap.Applications[i], false)
		if err != nil {
			return 0, err
		}
		args = append(args, snap.Applications[i].UID, e)
	}
	return s.run(ctx, cluster, snap.ListedAt, args...)
}

// ApplyClusterSnapshot applies the list of a kind's apps.
func (s *Store) ApplyClusterSnapshot(ctx context.Context, cluster string, snap events.ClusterSnapshot) (int, error) {
	kind, err := kindOf(snap.Kind)
	if err != nil {
		return 0, err
	}
	args := make([]any, 0, 3+len(snap.Apps))
	args = append(args, "cluster", kind, snap.Revision.Key())
	for _, a := range snap.Apps {
		args = append(args, events.Subject(a.Namespace, a.App))
	}
	return s.run(ctx, cluster, snap.ListedAt, args...)
}

// Rebuilding says whether the summaries of a cluster lack a full-state round of pods or
// of workflows: Redis lost its data (or never had a round), and the watcher is to run one
// at once (watch.Config.Rebuilding). The floors every round writes are the marker: a
// read of two fields, cheap enough to poll every second. Until a round of both kinds
// has been applied, the app list may miss apps or show them incomplete.
func (s *Store) Rebuilding(ctx context.Context, cluster string) (bool, error) {
	v, err := s.rdb.HMGet(ctx, s.base(cluster)+"f", kindPod, kindWorkflow).Result()
	if err != nil {
		return false, fmt.Errorf("read the summaries' round marker: %w", err)
	}
	return v[0] == nil || v[1] == nil, nil
}

// ErrCorrupt means a stored summary could not be read.
var ErrCorrupt = errors.New("a stored summary is not valid JSON")

// Summary returns one app's summary; ok is false when the app has none.
func (s *Store) Summary(ctx context.Context, cluster, namespace, app string) (sum events.AppSummary, ok bool, err error) {
	raw, err := s.rdb.HGet(ctx, s.SummariesKey(cluster, namespace), app).Bytes()
	if errors.Is(err, redis.Nil) {
		return events.AppSummary{}, false, nil
	}
	if err != nil {
		return events.AppSummary{}, false, fmt.Errorf("read the summary of %s/%s: %w", namespace, app, err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil {
		return events.AppSummary{}, false, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, namespace, app, err)
	}
	return sum, true, nil
}

// Summaries returns the summaries of the apps of each namespace, in one round trip.
func (s *Store) Summaries(ctx context.Context, cluster string, namespaces ...string) (map[string][]events.AppSummary, error) {
	cmds := make([]*redis.MapStringStringCmd, len(namespaces))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ns := range namespaces {
			cmds[i] = p.HGetAll(ctx, s.SummariesKey(cluster, ns))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read summaries: %w", err)
	}
	out := make(map[string][]events.AppSummary, len(namespaces))
	for i, ns := range namespaces {
		m := cmds[i].Val()
		list := make([]events.AppSummary, 0, len(m))
		for app, raw := range m {
			var sum events.AppSummary
			if err := json.Unmarshal([]byte(raw), &sum); err != nil {
				return nil, fmt.Errorf("%w: %s/%s: %v", ErrCorrupt, ns, app, err)
			}
			list = append(list, sum)
		}
		out[ns] = list
	}
	return out, nil
}

// Watch calls onChange with every change of a summary of the namespace (cluster and
// namespace empty: of every namespace of every cluster) until ctx ends (it returns nil),
// the subscription fails or onChange returns an error (it returns that). It calls ready
// once subscribed: a read of the summaries after ready misses no change.
func (s *Store) Watch(ctx context.Context, cluster, namespace string, ready func(), onChange func(events.SummaryChange) error) error {
	sub := s.rdb.Subscribe(ctx, s.Channel())
	defer sub.Close()
	// A blocked receive does not notice its context ending; closing the subscription ends it.
	stop := context.AfterFunc(ctx, func() { sub.Close() })
	defer stop()
	if _, err := sub.Receive(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("subscribe to %s: %w", s.Channel(), err)
	}
	if ready != nil {
		ready()
	}
	for {
		msg, err := sub.ReceiveMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("summary changes: %w", err)
		}
		var c events.SummaryChange
		if err := json.Unmarshal([]byte(msg.Payload), &c); err != nil {
			return fmt.Errorf("summary change %.200q: %w", msg.Payload, err)
		}
		if (cluster == "" || c.Cluster == cluster) && (namespace == "" || c.Namespace == namespace) {
			if err := onChange(c); err != nil {
				return err
			}
		}
	}
}

// Keys lists the keys of one cluster's data (for tests and inspection).
func (s *Store) Keys(ctx context.Context, cluster string) ([]string, error) {
	var keys []string
	iter := s.rdb.Scan(ctx, 0, escapeGlob(s.base(cluster))+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
