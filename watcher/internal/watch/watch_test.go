package watch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argofake "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned/fake"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/watcher/internal/state"
)

// recorder is a Sink that keeps every event, in order.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Enqueue(_ string, _ events.Ordering, e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) count(typ string) int {
	n := 0
	for _, e := range r.all() {
		if e.Type() == typ {
			n++
		}
	}
	return n
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type fixture struct {
	kube *kubefake.Clientset
	argo *argofake.Clientset
	rec  *recorder
	w    *Watcher
	stop func()
}

// revisions makes fake clientsets write resourceVersions as an API server does: one
// counter for every write (like etcd's revision), and lists at the current revision.
type revisions struct {
	mu  sync.Mutex
	rev int64
}

func (r *revisions) install(f *k8stesting.Fake, tracker k8stesting.ObjectTracker) {
	react := k8stesting.ObjectReaction(tracker)
	write := func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		var obj runtime.Object
		switch a := a.(type) {
		case k8stesting.CreateAction:
			obj = a.GetObject()
		case k8stesting.UpdateAction:
			obj = a.GetObject()
		}
		if m, err := meta.Accessor(obj); err == nil {
			r.rev++
			m.SetResourceVersion(fmt.Sprint(r.rev))
		}
		return react(a)
	}
	list := func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		handled, obj, err := react(a)
		if l, lerr := meta.ListAccessor(obj); err == nil && lerr == nil {
			l.SetResourceVersion(fmt.Sprint(r.rev))
		}
		return handled, obj, err
	}
	// A deletion is a write: the deleted object's last state has the deletion's revision.
	del := func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		d := a.(k8stesting.DeleteAction)
		if obj, err := tracker.Get(d.GetResource(), d.GetNamespace(), d.GetName()); err == nil {
			if m, err := meta.Accessor(obj); err == nil {
				r.rev++
				m.SetResourceVersion(fmt.Sprint(r.rev))
				_ = tracker.Update(d.GetResource(), obj, d.GetNamespace())
			}
		}
		return react(a)
	}
	f.PrependReactor("delete", "*", del)
	f.PrependReactor("create", "*", write)
	f.PrependReactor("update", "*", write)
	f.PrependReactor("list", "*", list)
}

func start(t *testing.T, resync time.Duration) *fixture {
	t.Helper()
	return startConfig(t, Config{Cluster: "c1", AppLabel: "app", TaskLabel: "dwp.io/task", Resync: resync})
}

func startConfig(t *testing.T, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{kube: kubefake.NewClientset(), argo: argofake.NewSimpleClientset(), rec: &recorder{}}
	revs := &revisions{rev: 1} // an API server's revision is never 0
	revs.install(&fx.kube.Fake, fx.kube.Tracker())
	revs.install(&fx.argo.Fake, fx.argo.Tracker())
	fx.w = New(cfg, fx.kube, fx.argo, fx.rec, NewMetrics(prometheus.NewRegistry()), quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fx.w.Run(ctx) }()
	var once sync.Once
	fx.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(fx.stop)
	waitFor(t, "synced", fx.w.Synced)
	return fx
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newPod(name, app string, ready bool, extra map[string]string) *corev1.Pod {
	labels := map[string]string{"app": app}
	maps.Copy(labels, extra)
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name), Labels: labels, CreationTimestamp: metav1.NewTime(t0)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(t0.Add(time.Second))}}},
	}
}

func newWorkflow(name, app string, phase wfv1.WorkflowPhase, created time.Time) *wfv1.Workflow {
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{"app": app, "dwp.io/task": "build"}, CreationTimestamp: metav1.NewTime(created)},
		Status: wfv1.WorkflowStatus{Phase: phase},
	}
}

// When the summaries lost their state, a round is run at once (not at the resync
// interval), and not again while its events are on their way; and rounds carry when
// their listing began.
func TestLostSummariesAreRebuiltAtOnce(t *testing.T) {
	var lost atomic.Bool
	var checks atomic.Int32
	fx := startConfig(t, Config{Cluster: "c1", AppLabel: "app", TaskLabel: "dwp.io/task", Resync: time.Hour,
		RebuildCheck: 20 * time.Millisecond, Rebuilding: func(context.Context) (bool, error) {
			checks.Add(1)
			return lost.Load(), nil
		}})
	rounds := func() int { return fx.rec.count(events.TypeClusterSnapshot) / 2 } // pods and workflows
	if rounds() != 1 {
		t.Fatalf("%d rounds at the start", rounds())
	}
	lost.Store(true)
	began := time.Now()
	waitFor(t, "a round after the loss", func() bool { return rounds() == 2 })
	lost.Store(false)
	t.Logf("round %v after the loss was reported (grace after the first round included)", time.Since(began).Round(time.Millisecond))
	n := checks.Load()
	waitFor(t, "more checks", func() bool { return checks.Load() > n+10 })
	if rounds() != 2 {
		t.Errorf("%d rounds; want 2 (the marker is back)", rounds())
	}
	for _, e := range fx.rec.all() {
		if e.Type() == events.TypeClusterSnapshot {
			var c events.ClusterSnapshot
			if err := e.DataAs(&c); err != nil || c.ListedAt.IsZero() {
				t.Errorf("cluster snapshot without listedAt: %v %s", err, e.Data())
			}
		}
	}
}

func TestChangesAreEmitted(t *testing.T) {
	fx := start(t, time.Hour)
	ctx := context.Background()
	pods := fx.kube.CoreV1().Pods("shop")
	p, err := pods.Create(ctx, newPod("web-1", "web", false, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, newPod("wf-pod", "web", false, map[string]string{state.LabelWorkflowPod: "build-1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod changed", func() bool { return fx.rec.count(events.TypePodChanged) == 1 })

	// A change the summaries do not use (an annotation) is not sent.
	p.Annotations = map[string]string{"note": "x"}
	if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A relabelled pod leaves its app.
	p.Labels["app"] = "api"
	if p, err = pods.Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod moved", func() bool {
		return fx.rec.count(events.TypePodChanged) == 2 && fx.rec.count(events.TypePodDeleted) == 1
	})
	if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod deleted", func() bool { return fx.rec.count(events.TypePodDeleted) == 2 })

	var subjects []string
	var ords []events.Ordering
	for _, e := range fx.rec.all() {
		if e.Type() == events.TypePodChanged || e.Type() == events.TypePodDeleted {
			_, _, s, err := events.DecodePod(e)
			if err != nil {
				t.Fatalf("emitted an invalid event: %v", err)
			}
			subjects = append(subjects, e.Type()+" "+e.Subject())
			ords = append(ords, s.Ordering)
			if s.Name == "wf-pod" {
				t.Error("a workflow pod was emitted as an app pod")
			}
		}
	}
	want := []string{events.TypePodChanged + " shop/web", events.TypePodDeleted + " shop/web", events.TypePodChanged + " shop/api", events.TypePodDeleted + " shop/api"}
	if !slices.Equal(subjects, want) {
		t.Errorf("events %v\nwant    %v", subjects, want)
	}
	if !(ords[0] < ords[1] && ords[1] == ords[2] && ords[2] < ords[3]) { // the move's two events share its key
		t.Errorf("ordering keys %v", ords)
	}
}

// The events of a random history, applied to the store in order or shuffled and
// tripled, give the same keyspace, and the summaries of the cluster's final state.
func TestEventsMakeExactSummaries(t *testing.T) {
	fx := start(t, 150*time.Millisecond)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	apps := []string{"web", "api", "db"}
	pods := fx.kube.CoreV1().Pods("shop")
	wfs := fx.argo.ArgoprojV1alpha1().Workflows("shop")
	for i := range 120 {
		switch r := rng.IntN(10); {
		case r < 3:
			_, _ = pods.Create(ctx, newPod(fmt.Sprintf("p%d", i), apps[rng.IntN(3)], rng.IntN(2) == 0, nil), metav1.CreateOptions{})
		case r < 5:
			l, _ := pods.List(ctx, metav1.ListOptions{})
			if len(l.Items) > 0 {
				p := l.Items[rng.IntN(len(l.Items))]
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: int32(rng.IntN(5))}}
				if rng.IntN(3) == 0 {
					p.Labels["app"] = apps[rng.IntN(3)]
				}
				_, _ = pods.Update(ctx, &p, metav1.UpdateOptions{})
			}
		case r < 6:
			l, _ := pods.List(ctx, metav1.ListOptions{})
			if len(l.Items) > 0 {
				_ = pods.Delete(ctx, l.Items[rng.IntN(len(l.Items))].Name, metav1.DeleteOptions{})
			}
		case r < 8:
			_, _ = wfs.Create(ctx, newWorkflow(fmt.Sprintf("w%d", i), apps[rng.IntN(3)], "", t0.Add(time.Duration(i)*time.Second)), metav1.CreateOptions{})
		case r < 9:
			l, _ := wfs.List(ctx, metav1.ListOptions{})
			if len(l.Items) > 0 {
				x := l.Items[rng.IntN(len(l.Items))]
				x.Status.Phase = []wfv1.WorkflowPhase{"Running", "Succeeded", "Failed"}[rng.IntN(3)]
				x.Status.Message = "step " + fmt.Sprint(i)
				_, _ = wfs.Update(ctx, &x, metav1.UpdateOptions{})
			}
		default:
			l, _ := wfs.List(ctx, metav1.ListOptions{})
			if len(l.Items) > 0 {
				_ = wfs.Delete(ctx, l.Items[rng.IntN(len(l.Items))].Name, metav1.DeleteOptions{})
			}
		}
		if i%10 == 0 {
			time.Sleep(40 * time.Millisecond) // let rounds interleave with changes
		}
	}
	// Wait for a round that began after the last change.
	n := fx.rec.count(events.TypeClusterSnapshot)
	waitFor(t, "two more rounds", func() bool { return fx.rec.count(events.TypeClusterSnapshot) >= n+4 })
	fx.stop()
	recorded := fx.rec.all()

	srv := redistest.Start(t)
	inOrder, shuffled := srv.Client(t, 1), srv.Client(t, 2)
	apply(t, summarystore.New(inOrder, "w:").WithClock(fixedClock), recorded)
	tripled := slices.Concat(recorded, recorded, recorded)
	rng.Shuffle(len(tripled), func(i, j int) { tripled[i], tripled[j] = tripled[j], tripled[i] })
	apply(t, summarystore.New(shuffled, "w:").WithClock(fixedClock), tripled)

	a, b := redistest.Dump(ctx, t, inOrder, ""), redistest.Dump(ctx, t, shuffled, "")
	if len(a) == 0 || !maps.Equal(a, b) {
		t.Errorf("keyspaces differ:\nin order %v\nshuffled %v", a, b)
	}

	// Expected: the summaries of the cluster's final state.
	want := map[string]string{}
	podsByApp := map[string][]events.Pod{}
	wfsByApp := map[string][]events.Workflow{}
	pl, _ := pods.List(ctx, metav1.ListOptions{})
	for i := range pl.Items {
		p := &pl.Items[i]
		s := state.Pod(p, p.Labels["app"], mustOrd(t, p.ResourceVersion))
		podsByApp[s.App] = append(podsByApp[s.App], s)
	}
	wl, _ := wfs.List(ctx, metav1.ListOptions{})
	for i := range wl.Items {
		x := &wl.Items[i]
		s := state.Workflow(x, x.Labels["app"], "dwp.io/task", mustOrd(t, x.ResourceVersion))
		wfsByApp[s.App] = append(wfsByApp[s.App], s)
	}
	for _, app := range apps {
		if s, ok := summarystore.Summarize("c1", "shop", app, podsByApp[app], wfsByApp[app]); ok {
			want[app] = fmt.Sprintf("%+v %+v %s", s.Run, s.CICD, s.Revision)
		}
	}
	got := map[string]string{}
	all, err := summarystore.New(inOrder, "w:").Summaries(ctx, "c1", "shop")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all["shop"] {
		got[s.App] = fmt.Sprintf("%+v %+v %s", s.Run, s.CICD, s.Revision)
	}
	if !maps.Equal(got, want) {
		t.Errorf("summaries\n got  %v\n want %v", got, want)
	}
}

func mustOrd(t *testing.T, rv string) events.Ordering {
	t.Helper()
	o, err := events.ParseOrdering(rv)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func apply(t *testing.T, s *summarystore.Store, evs []event.Event) {
	t.Helper()
	ctx := context.Background()
	for _, e := range evs {
		var err error
		switch e.Type() {
		case events.TypePodChanged, events.TypePodDeleted:
			c, d, p, derr := events.DecodePod(e)
			if err = derr; err == nil {
				_, err = s.ApplyPod(ctx, c, d, p)
			}
		case events.TypeWorkflowChanged, events.TypeWorkflowDeleted:
			c, d, w, derr := events.DecodeWorkflow(e)
			if err = derr; err == nil {
				_, err = s.ApplyWorkflow(ctx, c, d, w)
			}
		case events.TypeApplicationChanged, events.TypeApplicationDeleted:
			c, d, a, derr := events.DecodeApplication(e)
			if err = derr; err == nil {
				_, err = s.ApplyApplication(ctx, c, d, a)
			}
		case events.TypeAppSnapshot:
			c, snap, derr := events.DecodeAppSnapshot(e)
			if err = derr; err == nil {
				_, err = s.ApplyAppSnapshot(ctx, c, snap)
			}
		case events.TypeClusterSnapshot:
			c, snap, derr := events.DecodeClusterSnapshot(e)
			if err = derr; err == nil {
				_, err = s.ApplyClusterSnapshot(ctx, c, snap)
			}
		case events.TypeWorkflowSucceeded, events.TypeWorkflowStep:
			// for the task function's CD, not the summaries
		default:
			err = fmt.Errorf("unexpected type %s", e.Type())
		}
		if err != nil {
			t.Fatalf("%s %s: %v", e.Type(), e.ID(), err)
		}
	}
}
