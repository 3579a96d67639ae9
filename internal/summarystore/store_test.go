package summarystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
)

var (
	srvOnce sync.Once
	srv     *redistest.Server
	srvErr  error
)

// newStore is a Store on its own database of a private redis-server, emptied first.
func newStore(t *testing.T, db int) (*Store, *redis.Client) {
	t.Helper()
	srvOnce.Do(func() { srv, srvErr = redistest.Launch() })
	if errors.Is(srvErr, redistest.ErrNoRedis) {
		t.Skip(srvErr)
	}
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DB: db})
	t.Cleanup(func() { _ = c.Close() })
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return New(c, "t:").WithClock(func() time.Time { return testEpoch }), c
}

// testEpoch is the stores' clock in tests.
var testEpoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func diff(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	n := 0
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if got[k] != want[k] {
			if n++; n <= 8 {
				t.Errorf("%s %s:\n got  %s\n want %s", what, k, got[k], want[k])
			}
		}
	}
	if n > 8 {
		t.Errorf("%s: %d differences in all", what, n)
	}
}

func applyAll(ctx context.Context, t *testing.T, s *Store, ds []delivery) {
	t.Helper()
	for _, d := range ds {
		if _, err := d.apply(ctx, s, "c1"); err != nil {
			t.Fatalf("%s: %v", d.name, err)
		}
	}
}

// The same events delivered in order, and shuffled with every event three times, leave
// the same keyspace; and the summaries are those of the world's final state.
func TestShuffledTripledDeliveryEqualsInOrder(t *testing.T) {
	ctx := context.Background()
	inOrder, inOrderDB := newStore(t, 1)
	shuffled, shuffledDB := newStore(t, 2)
	withCD := 0
	for seed := uint64(1); seed <= 25; seed++ {
		w := newWorld(seed)
		for range 250 {
			w.step()
		}
		inOrderDB.FlushDB(ctx)
		shuffledDB.FlushDB(ctx)
		applyAll(ctx, t, inOrder, w.out)
		tripled := slices.Concat(w.out, w.out, w.out)
		rng := rand.New(rand.NewPCG(seed, 7))
		rng.Shuffle(len(tripled), func(i, j int) { tripled[i], tripled[j] = tripled[j], tripled[i] })
		applyAll(ctx, t, shuffled, tripled)

		diff(t, fmt.Sprintf("seed %d: keyspace", seed), redistest.Dump(ctx, t, shuffledDB, ""), redistest.Dump(ctx, t, inOrderDB, ""))
		diff(t, fmt.Sprintf("seed %d: summaries", seed), stored(ctx, t, inOrder, "c1"), w.expected(t, "c1"))
		if t.Failed() {
			t.Fatalf("seed %d: %d events", seed, len(w.out))
		}
		for _, v := range w.expected(t, "c1") {
			if strings.Contains(v, `"cd":`) {
				withCD++
			}
		}
	}
	if withCD == 0 {
		t.Error("no world ended with an app deployed by an Application")
	}
}

// Events lost, Redis emptied: one snapshot round makes the summaries right again, and
// leaves nothing of apps that are gone.
func TestSnapshotRoundConverges(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, 3)
	for seed := uint64(100); seed < 115; seed++ {
		db.FlushDB(ctx)
		w := newWorld(seed)
		for range 300 {
			w.step()
		}
		rng := rand.New(rand.NewPCG(seed, 11))
		var kept []delivery
		for i, d := range w.out {
			if seed%3 == 0 && i == len(w.out)/2 {
				db.FlushAll(ctx) // Redis lost everything halfway
			}
			if rng.IntN(100) < 40 {
				continue // lost
			}
			kept = append(kept, d)
		}
		applyAll(ctx, t, s, kept)
		before := len(w.out)
		w.snapshotRound()
		round := w.out[before:]
		rng.Shuffle(len(round), func(i, j int) { round[i], round[j] = round[j], round[i] })
		applyAll(ctx, t, s, round)
		diff(t, fmt.Sprintf("seed %d: summaries after a round", seed), stored(ctx, t, s, "c1"), w.expected(t, "c1"))

		// Nothing is left of apps without live objects.
		apps, _ := db.SMembers(ctx, s.base("c1")+"apps").Result()
		for _, na := range apps {
			if _, ok := w.expected(t, "c1")[na]; !ok {
				t.Errorf("seed %d: objects of the gone app %s kept", seed, na)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// Forged events with ordering keys from the future (deletions and changes of live
// objects, objects of made-up apps, snapshots finding everything gone), delivered in any
// order among the real ones and repeated, are undone by the next round: after it the
// summaries are the cluster's.
func TestRoundUndoesForgedFutureState(t *testing.T) {
	testRoundUndoesForged(t, 10, false, 0)
}

// Real changes that race a round's events (newer than its revision, stored after its
// listing began) are kept by it, while what was forged before is undone. (A forged state
// of an object, or a forged floor, holds back that object's real changes until it is
// undone; those come back with the round after, so here only made-up apps are forged.)
func TestRoundKeepsRacingChanges(t *testing.T) {
	testRoundUndoesForged(t, 11, true, 20)
}

func testRoundUndoesForged(t *testing.T, dbn int, fakeOnly bool, racing int) {
	ctx := context.Background()
	s, db := newStore(t, dbn)
	for seed := uint64(200); seed < 225; seed++ {
		db.FlushDB(ctx)
		s.now = func() time.Time { return testEpoch }
		w := newWorld(seed)
		for range 250 {
			w.step()
		}
		// A round before the forgeries, at the revision of the one after: a cluster that
		// did not change in between still has them undone.
		w.snapshotRound()
		mixed := slices.Concat(w.out, w.forged(30, fakeOnly), w.forged(30, fakeOnly))
		rng := rand.New(rand.NewPCG(seed, 13))
		rng.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
		applyAll(ctx, t, s, mixed)

		// A minute later the watcher lists the cluster; the cluster goes on changing while
		// the round's events are on their way, and they all arrive in any order.
		listed := testEpoch.Add(time.Minute)
		w.listedAt = listed
		before := len(w.out)
		w.snapshotRound()
		for range racing {
			w.step()
		}
		later := slices.Clone(w.out[before:])
		rng.Shuffle(len(later), func(i, j int) { later[i], later[j] = later[j], later[i] })
		s.now = func() time.Time { return listed.Add(time.Second) }
		applyAll(ctx, t, s, later)
		diff(t, fmt.Sprintf("seed %d: summaries after a round", seed), stored(ctx, t, s, "c1"), w.expected(t, "c1"))
		if t.Failed() {
			t.FailNow()
		}
	}
}

func pod(app, uid string, ord events.Ordering, ready bool) events.Pod {
	return events.Pod{Namespace: "shop", App: app, Name: "p-" + uid, UID: uid, Ordering: ord,
		Phase: "Running", Ready: ready, ChangedAt: time.Date(2026, 1, 1, 0, 0, int(ord%60), 0, time.UTC)}
}

func TestStaleAndDuplicateEventsChangeNothing(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, 4)
	mustApply := func(want int, f func() (int, error)) {
		t.Helper()
		n, err := f()
		if err != nil || n != want {
			t.Fatalf("changed %d summaries (err %v), want %d", n, err, want)
		}
	}
	mustApply(1, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "a", 10, false)) })
	mustApply(1, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "a", 12, true)) })
	before := redistest.Dump(ctx, t, db, "")
	mustApply(0, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "a", 12, true)) })  // duplicate
	mustApply(0, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "a", 11, false)) }) // older
	diff(t, "keyspace", redistest.Dump(ctx, t, db, ""), before)

	// Deleted, then a late change of the pod arrives: it stays deleted.
	mustApply(1, func() (int, error) { return s.ApplyPod(ctx, "c1", true, pod("web", "a", 20, true)) })
	mustApply(0, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "a", 15, true)) })
	if _, ok, _ := s.Summary(ctx, "c1", "shop", "web"); ok {
		t.Error("a deleted pod's app still has a summary")
	}
	// The same ordering key: the deletion wins whatever came first.
	mustApply(1, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "b", 30, true)) })
	mustApply(1, func() (int, error) { return s.ApplyPod(ctx, "c1", true, pod("web", "b", 30, true)) })
	mustApply(0, func() (int, error) { return s.ApplyPod(ctx, "c1", false, pod("web", "b", 30, true)) })
}

func TestSummaryChangesArePublished(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := newStore(t, 5)
	changes := make(chan events.SummaryChange, 10)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, "c1", "shop", func() { close(ready) }, func(c events.SummaryChange) error { changes <- c; return nil })
	}()
	<-ready
	if _, err := s.ApplyPod(ctx, "c1", false, pod("web", "a", 10, true)); err != nil {
		t.Fatal(err)
	}
	// Another namespace's change is not this watcher's.
	other := pod("web", "z", 11, true)
	other.Namespace = "bank"
	if _, err := s.ApplyPod(ctx, "c1", false, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyPod(ctx, "c1", true, pod("web", "a", 12, true)); err != nil {
		t.Fatal(err)
	}
	c := <-changes
	if c.Cluster != "c1" || c.Namespace != "shop" || c.App != "web" || c.Summary == nil || c.Summary.Run.State != events.RunRunning || c.Summary.Revision != "10" {
		t.Errorf("first change %+v", c)
	}
	c = <-changes
	if c.App != "web" || c.Summary != nil {
		t.Errorf("deletion published as %+v", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("watch: %v", err)
	}
}

// The script's summary equals Summarize, for tricky strings too.
func TestScriptMatchesSummarize(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 6)
	created := time.Date(2026, 2, 3, 4, 5, 6, 700, time.FixedZone("X", 3600))
	wfs := []events.Workflow{
		{Namespace: "shop", App: "web", Name: "b-1", UID: "w1", Ordering: 5, Phase: "Failed", Task: "build",
			Message: "quote \" slash / backslash \\ tab \t nul \x00 ü \u2028 <&>", CreatedAt: created, StartedAt: created.Add(time.Second), FinishedAt: created.Add(time.Hour)},
		{Namespace: "shop", App: "web", Name: "b-0", UID: "w0", Ordering: 4, Phase: "Succeeded", CreatedAt: created},
		{Namespace: "shop", App: "web", Name: "a-2", UID: "w2", Ordering: 3, CreatedAt: created.Add(-time.Hour)},
	}
	pods := []events.Pod{
		pod("web", "p1", 7, true),
		{Namespace: "shop", App: "web", Name: "p2", UID: "p2", Ordering: 8, Phase: "Pending", Restarts: 7, Problem: "ImagePullBackOff", ChangedAt: created},
		{Namespace: "shop", App: "web", Name: "p3", UID: "p3", Ordering: 9, Phase: "Succeeded", ChangedAt: created},
	}
	for _, w := range wfs {
		if _, err := s.ApplyWorkflow(ctx, "c1", false, w); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		if _, err := s.ApplyPod(ctx, "c1", false, p); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Summary(ctx, "c1", "shop", "web")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want, _ := Summarize("c1", "shop", "web", pods, wfs)
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("script:    %s\nSummarize: %s", g, w)
	}
	if got.Run.State != events.RunDegraded || got.CICD.Workflow != "b-1" || got.Run.Restarts != 7 {
		t.Errorf("unexpected summary %s", mustJSON(t, got))
	}
}

func TestRunStates(t *testing.T) {
	mk := func(phase string, ready bool, problem string, terminating bool) events.Pod {
		return events.Pod{Namespace: "n", App: "a", Name: "p", UID: "u", Ordering: 1, Phase: phase, Ready: ready, Problem: problem, Terminating: terminating, ChangedAt: time.Unix(1, 0)}
	}
	wf := []events.Workflow{{Namespace: "n", App: "a", Name: "w", UID: "w", Ordering: 1, CreatedAt: time.Unix(1, 0)}}
	for _, tc := range []struct {
		name string
		pods []events.Pod
		want string
	}{
		{"no pods", nil, events.RunStopped},
		{"completed only", []events.Pod{mk("Succeeded", false, "", false)}, events.RunStopped},
		{"all ready", []events.Pod{mk("Running", true, "", false), mk("Succeeded", false, "", false)}, events.RunRunning},
		{"starting", []events.Pod{mk("Running", true, "", false), mk("Pending", false, "", false)}, events.RunProgressing},
		{"terminating", []events.Pod{mk("Running", true, "", false), mk("Running", true, "", true)}, events.RunProgressing},
		{"one crashing", []events.Pod{mk("Running", true, "", false), mk("Running", false, "CrashLoopBackOff", false)}, events.RunDegraded},
		{"all failed", []events.Pod{mk("Failed", false, "", false)}, events.RunFailed},
	} {
		s, ok := Summarize("c", "n", "a", tc.pods, wf)
		if !ok || s.Run.State != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, s.Run.State, tc.want)
		}
		if s.CICD == nil || s.CICD.Phase != "Pending" {
			t.Errorf("%s: a workflow without a phase should show Pending: %+v", tc.name, s.CICD)
		}
	}
}

func TestClustersAreSeparate(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 7)
	if _, err := s.ApplyPod(ctx, "c1", false, pod("web", "a", 10, true)); err != nil {
		t.Fatal(err)
	}
	// c2 finds no app at all: c1 keeps its summary.
	if _, err := s.ApplyClusterSnapshot(ctx, "c2", events.ClusterSnapshot{Kind: events.KindPods, Revision: 100}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Summary(ctx, "c1", "shop", "web"); !ok {
		t.Error("another cluster's snapshot removed c1's app")
	}
	if _, err := s.ApplyPod(ctx, "bad cluster", false, pod("web", "a", 10, true)); err == nil || !strings.Contains(err.Error(), "cluster") {
		t.Errorf("invalid cluster name: %v", err)
	}
}

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(map[string]string{})
	if err != nil || o.Addr != DefaultRedisAddr || o.Prefix != DefaultRedisPrefix || o.DB != 0 {
		t.Errorf("defaults: %+v %v", o, err)
	}
	o, err = ParseOptions(map[string]string{EnvRedisAddr: "r:1", EnvRedisDB: "3", EnvRedisPrefix: "x:"})
	if err != nil || o.Addr != "r:1" || o.DB != 3 || o.Prefix != "x:" {
		t.Errorf("%+v %v", o, err)
	}
	for _, bad := range []map[string]string{{EnvRedisDB: "-1"}, {EnvRedisDB: "one"}, {EnvRedisPrefix: "a b"}, {EnvRedisPrefix: "{x}"}} {
		if _, err := ParseOptions(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestStoredSummaryDecodes(t *testing.T) {
	ctx := context.Background()
	s, db := newStore(t, 8)
	if _, err := s.ApplyPod(ctx, "c1", false, pod("web", "a", 10, true)); err != nil {
		t.Fatal(err)
	}
	raw, err := db.HGet(ctx, s.SummariesKey("c1", "shop"), "web").Result()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("stored summary is not JSON: %v: %s", err, raw)
	}
	db.HSet(ctx, s.SummariesKey("c1", "shop"), "broken", "{")
	if _, err := s.Summaries(ctx, "c1", "shop"); err == nil {
		t.Error("a corrupt summary was read without error")
	}
}

func TestWatchEndsWithItsContext(t *testing.T) {
	s, _ := newStore(t, 9)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, "", "", func() { close(ready) }, func(events.SummaryChange) error { return nil })
	}()
	<-ready
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Watch after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch still blocked 5 s after its context ended")
	}
}

// TestMain stops the package's shared redis-server once its tests and benchmarks are done.
func TestMain(m *testing.M) {
	code := m.Run()
	srv.Stop()
	os.Exit(code)
}
