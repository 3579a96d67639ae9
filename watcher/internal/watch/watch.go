// Package watch turns the cluster's pods, Argo Workflows and Argo CD Applications of
// apps into the watcher's events (internal/events): shared informers emit each change,
// and full-state rounds (when the watcher starts and at an interval) emit every app's
// objects, so that the summaries converge whatever was lost.
//
// A round lists each kind with a fresh paginated LIST rather than reading the informers'
// caches: a LIST is consistent at its resourceVersion, which is what lets the receiver
// remove anything older that the round does not list. With several namespaces the
// round's revision is the smallest of their lists': everything at or below it is in the
// lists or was deleted later (and the deletion has its own, greater, ordering key).
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	wfinformers "github.com/argoproj/argo-workflows/v3/pkg/client/informers/externalversions/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/watcher/internal/state"
)

// Sink takes the events to deliver, keyed by what they describe.
type Sink interface {
	Enqueue(key string, ord events.Ordering, e event.Event)
}

// Config says what to watch.
type Config struct {
	Cluster   string
	AppLabel  string
	TaskLabel string
	// Namespaces are watched; empty means all.
	Namespaces []string
	// Resync is the interval of full-state rounds.
	Resync time.Duration
	// PageSize bounds one list request of a round.
	PageSize int
	// StepRecheck is how often the steps that wait for the task function are sent again
	// (default 10 s): a step that waits on Argo CD is looked at again, a lost event
	// retried, a step whose time is up failed.
	StepRecheck time.Duration
	// Rebuilding, when set, says whether the summaries lost the rounds' state
	// (summarystore.Store.Rebuilding): it is asked every RebuildCheck (default 1 s), and
	// a round is run at once when so, so that a Redis that lost its data is whole again
	// within seconds rather than at the next resync.
	Rebuilding   func(ctx context.Context) (bool, error)
	RebuildCheck time.Duration
}

// Watcher emits the events of one cluster while Run runs.
type Watcher struct {
	cfg     Config
	kube    kubernetes.Interface
	argo    argoclient.Interface
	sink    Sink
	metrics *Metrics
	log     *slog.Logger
	order   *state.Orderer
	now     func() time.Time

	synced atomic.Bool

	workflowInformers []cache.SharedIndexInformer
	// applications, when set, is the informer of Argo CD Applications (WatchApplications),
	// applicationClient their resource in argoCDNamespace, listed by the rounds.
	applications      cache.SharedIndexInformer
	applicationClient dynamic.ResourceInterface
	argoCDNamespace   string
}

// New returns a Watcher; metrics may be shared by successive Watchers.
func New(cfg Config, kube kubernetes.Interface, argo argoclient.Interface, sink Sink, metrics *Metrics, log *slog.Logger) *Watcher {
	if cfg.PageSize <= 0 {
		cfg.PageSize = 500
	}
	if cfg.StepRecheck <= 0 {
		cfg.StepRecheck = 10 * time.Second
	}
	if cfg.RebuildCheck <= 0 {
		cfg.RebuildCheck = time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{cfg: cfg, kube: kube, argo: argo, sink: sink, metrics: metrics, log: log, now: time.Now}
	w.order = state.NewOrderer(nil)
	w.order.OnFallback = func(rv string) {
		log.Warn("a resourceVersion is not a decimal integer: ordering events by the watcher's clock from now on", "resourceVersion", rv)
	}
	return w
}

// Synced says that the informers have synced and the first full-state round was queued.
func (w *Watcher) Synced() bool { return w.synced.Load() }

// podSelector selects the pods of apps, without Argo's workflow pods.
func (w *Watcher) podSelector() string { return w.cfg.AppLabel + ",!" + state.LabelWorkflowPod }

func (w *Watcher) workflowSelector() string { return w.cfg.AppLabel }

func (w *Watcher) namespaces() []string {
	if len(w.cfg.Namespaces) == 0 {
		return []string{metav1.NamespaceAll}
	}
	return w.cfg.Namespaces
}

// Run watches until ctx ends. It returns an error only when it cannot start.
func (w *Watcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var synced []cache.InformerSynced
	for _, ns := range w.namespaces() {
		pods := coreinformers.NewFilteredPodInformer(w.kube, ns, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
			o.LabelSelector = w.podSelector()
		})
		wfs := wfinformers.NewFilteredWorkflowInformer(w.argo, ns, 0, cache.Indexers{}, func(o *metav1.ListOptions) {
			o.LabelSelector = w.workflowSelector()
		})
		for _, inf := range []cache.SharedIndexInformer{pods, wfs} {
			if err := inf.SetTransform(slim); err != nil {
				return fmt.Errorf("informer transform: %w", err)
			}
		}
		reg, err := pods.AddEventHandler(w.podHandler(pods))
		if err != nil {
			return fmt.Errorf("pod handler: %w", err)
		}
		synced = append(synced, reg.HasSynced)
		reg, err = wfs.AddEventHandler(w.workflowHandler(wfs))
		if err != nil {
			return fmt.Errorf("workflow handler: %w", err)
		}
		synced = append(synced, reg.HasSynced)
		w.workflowInformers = append(w.workflowInformers, wfs)
		for _, inf := range []cache.SharedIndexInformer{pods, wfs} {
			wg.Add(1)
			go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
		}
	}
	if w.applications != nil {
		// Not waited for: a cluster without Argo CD still has pods and workflows to watch.
		if _, err := w.applications.AddEventHandler(w.applicationHandler()); err != nil {
			return fmt.Errorf("application handler: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.applications.RunWithContext(ctx) }()
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended
	}
	w.log.Info("informers synced", "namespaces", w.cfg.Namespaces)

	// The first round replaces the informers' initial adds (not emitted): it is a
	// consistent snapshot, newer than their list. It is retried until it succeeds.
	backoff := time.Second
	for {
		err := w.Round(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		w.log.Error("full-state round failed; retrying", "err", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, w.cfg.Resync)
	}
	w.synced.Store(true)
	w.recheckSteps(nil)
	t := time.NewTicker(w.cfg.Resync)
	defer t.Stop()
	steps := time.NewTicker(w.cfg.StepRecheck)
	defer steps.Stop()
	var check <-chan time.Time
	if w.cfg.Rebuilding != nil {
		c := time.NewTicker(w.cfg.RebuildCheck)
		defer c.Stop()
		check = c.C
	}
	lastRound, grace := time.Now(), rebuildGrace
	checkFailing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-steps.C:
			w.recheckSteps(nil)
		case <-t.C:
			lastRound = time.Now()
			if err := w.Round(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("full-state round failed; the next one is due at the resync interval", "err", err)
			}
		case <-check:
			// A round's events take a moment to be applied: until then the marker is still
			// missing, and another round would only add load.
			if time.Since(lastRound) < grace {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, w.cfg.RebuildCheck)
			rebuilding, err := w.cfg.Rebuilding(cctx)
			cancel()
			if err != nil {
				if !checkFailing && ctx.Err() == nil {
					w.log.Warn("cannot tell whether the summaries were lost; the resync interval still rebuilds them", "err", err)
				}
				checkFailing = true
				continue
			}
			checkFailing = false
			if !rebuilding {
				grace = rebuildGrace
				continue
			}
			// Should the rounds not get through (the function down), they are not repeated
			// every few seconds: each waits twice as long, up to the resync interval.
			grace = min(2*grace, max(w.cfg.Resync, rebuildGrace))
			w.log.Warn("the summaries lost their state: running a full-state round now")
			w.metrics.rebuilds.Inc()
			lastRound = time.Now()
			if err := w.Round(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("full-state round to rebuild the summaries failed", "err", err)
			}
		}
	}
}

// rebuildGrace is how long after a round a missing marker is at first not taken for a
// loss: the round's events are on their way.
const rebuildGrace = 2 * time.Second

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Event keys: one per object and app (a pod that moves to another app has a deletion in
// the old one and a state in the new one, both to be sent), one per app snapshot.
func objectKey(kind, ns, app, uid string) string { return kind + "/" + ns + "/" + app + "/" + uid }

func (w *Watcher) emit(key string, ord events.Ordering, e event.Event, err error) {
	if err != nil {
		// A state made from an API object is always valid; this is a bug, loud.
		w.metrics.invalid.Inc()
		w.log.Error("cannot build an event", "key", key, "err", err)
		return
	}
	w.sink.Enqueue(key, ord, e)
}

func (w *Watcher) emitPod(p events.Pod, deleted bool) {
	e, err := events.NewPodEvent(w.cfg.Cluster, deleted, p, w.now())
	w.metrics.changes.WithLabelValues(events.KindPods, changeName(deleted)).Inc()
	w.emit(objectKey("pod", p.Namespace, p.App, p.UID), p.Ordering, e, err)
}

func (w *Watcher) emitWorkflow(s events.Workflow, deleted bool) {
	e, err := events.NewWorkflowEvent(w.cfg.Cluster, deleted, s, w.now())
	w.metrics.changes.WithLabelValues(events.KindWorkflows, changeName(deleted)).Inc()
	w.emit(objectKey("workflow", s.Namespace, s.App, s.UID), s.Ordering, e, err)
}

func changeName(deleted bool) string {
	if deleted {
		return "deleted"
	}
	return "changed"
}

// deletionOrdering is the ordering key of a deletion. A deletion the informer only
// inferred on relisting (DeletedFinalStateUnknown) carries the object's last known
// state; the deletion happened before the relist, whose resourceVersion the informer's
// last sync is at or after.
func (w *Watcher) deletionOrdering(obj metav1.Object, final bool, inf cache.SharedIndexInformer) events.Ordering {
	if final {
		return w.order.Of(obj.GetResourceVersion())
	}
	return max(w.order.Of(inf.LastSyncResourceVersion()), w.order.Of(obj.GetResourceVersion())+1)
}

func (w *Watcher) podHandler(inf cache.SharedIndexInformer) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			p, ok := obj.(*corev1.Pod)
			if !ok || initial {
				return
			}
			w.podChanged(nil, p)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Pod)
			n, ok2 := newObj.(*corev1.Pod)
			if ok1 && ok2 {
				w.podChanged(o, n)
			}
		},
		DeleteFunc: func(obj any) {
			final := true
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj, final = t.Obj, false
			}
			p, ok := obj.(*corev1.Pod)
			if !ok {
				return
			}
			if app := w.podApp(p); app != "" {
				w.emitPod(state.Pod(p, app, w.deletionOrdering(p, final, inf)), true)
			}
		},
	}
}

// podApp is the app of a pod, "" for none. The informers' selector leaves out Argo's
// workflow pods already; this holds should a watch not apply it.
func (w *Watcher) podApp(p *corev1.Pod) string {
	if _, wfPod := p.Labels[state.LabelWorkflowPod]; wfPod {
		return ""
	}
	return p.Labels[w.cfg.AppLabel]
}

// podChanged emits a pod's new state, unless nothing the summaries use changed; and its
// deletion from its former app when its app label changed.
func (w *Watcher) podChanged(old, p *corev1.Pod) {
	app := w.podApp(p)
	ord := w.order.Of(p.ResourceVersion)
	var before events.Pod
	if old != nil {
		if oldApp := w.podApp(old); oldApp != "" && oldApp != app {
			w.emitPod(state.Pod(old, oldApp, ord), true)
			old = nil
		} else {
			before = state.Pod(old, oldApp, ord)
		}
	}
	if app == "" {
		return
	}
	s := state.Pod(p, app, ord)
	before.ResourceVersion = s.ResourceVersion
	if old != nil && before == s {
		return
	}
	w.emitPod(s, false)
}

func (w *Watcher) workflowHandler(inf cache.SharedIndexInformer) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			wf, ok := obj.(*wfv1.Workflow)
			if !ok || initial {
				return
			}
			w.workflowChanged(nil, wf)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*wfv1.Workflow)
			n, ok2 := newObj.(*wfv1.Workflow)
			if ok1 && ok2 {
				w.workflowChanged(o, n)
			}
		},
		DeleteFunc: func(obj any) {
			final := true
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj, final = t.Obj, false
			}
			wf, ok := obj.(*wfv1.Workflow)
			if !ok {
				return
			}
			if app := wf.Labels[w.cfg.AppLabel]; app != "" {
				w.emitWorkflow(state.Workflow(wf, app, w.cfg.TaskLabel, w.deletionOrdering(wf, final, inf)), true)
			}
		},
	}
}

func (w *Watcher) workflowChanged(old, wf *wfv1.Workflow) {
	app := wf.Labels[w.cfg.AppLabel]
	if app != "" {
		w.stepsChanged(old, wf, app)
	}
	ord := w.order.Of(wf.ResourceVersion)
	var before events.Workflow
	if old != nil {
		if oldApp := old.Labels[w.cfg.AppLabel]; oldApp != "" && oldApp != app {
			w.emitWorkflow(state.Workflow(old, oldApp, w.cfg.TaskLabel, ord), true)
			old = nil
		} else {
			before = state.Workflow(old, oldApp, w.cfg.TaskLabel, ord)
		}
	}
	if app == "" {
		return
	}
	s := state.Workflow(wf, app, w.cfg.TaskLabel, ord)
	before.ResourceVersion = s.ResourceVersion
	if old != nil && before == s {
		return
	}
	w.emitWorkflow(s, false)
	if old != nil && s.Phase == string(wfv1.WorkflowSucceeded) && before.Phase != s.Phase {
		e, err := events.NewWorkflowSucceededEvent(w.cfg.Cluster, s, w.now())
		w.emit(objectKey("succeeded", s.Namespace, s.App, s.UID), s.Ordering, e, err)
	}
}

// slim keeps of an object only what the states are made of, so the informers' caches
// stay small (a workflow's status.nodes can be megabytes).
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		out := &corev1.Pod{ObjectMeta: slimMeta(o.ObjectMeta)}
		out.Status = corev1.PodStatus{
			Phase: o.Status.Phase, Conditions: o.Status.Conditions, StartTime: o.Status.StartTime,
			InitContainerStatuses: o.Status.InitContainerStatuses, ContainerStatuses: o.Status.ContainerStatuses,
		}
		return out, nil
	case *wfv1.Workflow:
		out := &wfv1.Workflow{ObjectMeta: slimMeta(o.ObjectMeta)}
		out.Spec.WorkflowTemplateRef = o.Spec.WorkflowTemplateRef
		out.Spec.Shutdown = o.Spec.Shutdown
		out.Status = wfv1.WorkflowStatus{Phase: o.Status.Phase, StartedAt: o.Status.StartedAt, FinishedAt: o.Status.FinishedAt, Message: o.Status.Message,
			Nodes: slimSteps(o.Status.Nodes)}
		return out, nil
	}
	return obj, nil
}

func slimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp, Labels: m.Labels,
	}
}

// Round emits a full-state round: for each kind, one snapshot per app that has objects
// of the kind, and the list of those apps, all at one revision.
func (w *Watcher) Round(ctx context.Context) error {
	start := time.Now()
	err := errors.Join(w.roundPods(ctx), w.roundWorkflows(ctx), w.roundApplications(ctx))
	result := "ok"
	if err != nil {
		result = "error"
	}
	w.metrics.rounds.WithLabelValues(result).Inc()
	w.metrics.roundDuration.Observe(time.Since(start).Seconds())
	return err
}

func (w *Watcher) roundPods(ctx context.Context) error {
	apps := map[events.AppRef][]events.Pod{}
	rev, listedAt, err := w.listAll(ctx, events.KindPods, func(ctx context.Context, ns string, opts metav1.ListOptions) (string, string, error) {
		l, err := w.kube.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return "", "", err
		}
		for i := range l.Items {
			p := &l.Items[i]
			if app := w.podApp(p); app != "" {
				ref := events.AppRef{Namespace: p.Namespace, App: app}
				apps[ref] = append(apps[ref], state.Pod(p, app, w.order.Of(p.ResourceVersion)))
			}
		}
		return l.ResourceVersion, l.Continue, nil
	}, w.podSelector(), func() { clear(apps) })
	if err != nil {
		return err
	}
	w.emitSnapshots(events.KindPods, rev, listedAt, sortedRefs(apps), func(s *events.AppSnapshot) { s.Pods = apps[events.AppRef{Namespace: s.Namespace, App: s.App}] })
	return nil
}

func (w *Watcher) roundWorkflows(ctx context.Context) error {
	apps := map[events.AppRef][]events.Workflow{}
	rev, listedAt, err := w.listAll(ctx, events.KindWorkflows, func(ctx context.Context, ns string, opts metav1.ListOptions) (string, string, error) {
		l, err := w.argo.ArgoprojV1alpha1().Workflows(ns).List(ctx, opts)
		if err != nil {
			return "", "", err
		}
		for i := range l.Items {
			wf := &l.Items[i]
			if app := wf.Labels[w.cfg.AppLabel]; app != "" {
				ref := events.AppRef{Namespace: wf.Namespace, App: app}
				apps[ref] = append(apps[ref], state.Workflow(wf, app, w.cfg.TaskLabel, w.order.Of(wf.ResourceVersion)))
			}
		}
		return l.ResourceVersion, l.Continue, nil
	}, w.workflowSelector(), func() { clear(apps) })
	if err != nil {
		return err
	}
	w.emitSnapshots(events.KindWorkflows, rev, listedAt, sortedRefs(apps), func(s *events.AppSnapshot) { s.Workflows = apps[events.AppRef{Namespace: s.Namespace, App: s.App}] })
	return nil
}

// emitSnapshots emits a round's snapshots of one kind: one per app (fill sets its
// objects), then the list of the apps, all at rev, listed from listedAt on.
func (w *Watcher) emitSnapshots(kind string, rev events.Ordering, listedAt time.Time, refs []events.AppRef, fill func(s *events.AppSnapshot)) {
	for _, ref := range refs {
		s := events.AppSnapshot{Kind: kind, Namespace: ref.Namespace, App: ref.App, Revision: rev, ListedAt: listedAt}
		fill(&s)
		e, err := events.NewAppSnapshotEvent(w.cfg.Cluster, s, w.now())
		w.emit("snapshot/"+kind+"/"+events.Subject(ref.Namespace, ref.App), rev, e, err)
	}
	w.metrics.roundApps.WithLabelValues(kind).Set(float64(len(refs)))
	e, err := events.NewClusterSnapshotEvent(w.cfg.Cluster, events.ClusterSnapshot{Kind: kind, Revision: rev, ListedAt: listedAt, Apps: refs}, w.now())
	w.emit("snapshot/"+kind, rev, e, err)
}

// listFunc lists one page, adding its items, and returns the list's resourceVersion and
// continue token.
type listFunc func(ctx context.Context, ns string, opts metav1.ListOptions) (rv, cont string, err error)

// listAll lists every watched namespace, page by page, and returns the round's revision:
// the smallest of the lists' resourceVersions, and when the listing began (the store
// takes anything stored before then claiming a greater revision for forged). A continue
// token that expired restarts the whole listing (reset forgets what was added), since
// pages of different lists are not one consistent state.
func (w *Watcher) listAll(ctx context.Context, kind string, list listFunc, selector string, reset func()) (events.Ordering, time.Time, error) {
	return w.listNamespaces(ctx, kind, w.namespaces(), list, selector, reset)
}

// listNamespaces is listAll over the given namespaces.
func (w *Watcher) listNamespaces(ctx context.Context, kind string, namespaces []string, list listFunc, selector string, reset func()) (events.Ordering, time.Time, error) {
	for attempt := 1; ; attempt++ {
		began := w.now()
		clock := w.order.Clock()
		var rev events.Ordering
		expired := false
		for _, ns := range namespaces {
			opts := metav1.ListOptions{LabelSelector: selector, Limit: int64(w.cfg.PageSize)}
			first := ""
			for {
				rv, cont, err := list(ctx, ns, opts)
				if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
					expired = true
					break
				}
				if err != nil {
					return 0, time.Time{}, fmt.Errorf("list %s in %q: %w", kind, ns, err)
				}
				if first == "" {
					first = rv
				}
				if cont == "" {
					break
				}
				opts.Continue = cont
			}
			if expired {
				break
			}
			// In clock mode the round is as of the clock before listing began.
			ord := w.order.Of(first)
			if w.order.Fallback() {
				ord = clock
			}
			if rev == 0 || ord < rev {
				rev = ord
			}
		}
		if !expired {
			return rev, began, nil
		}
		reset()
		if attempt == 3 {
			return 0, time.Time{}, fmt.Errorf("list %s: the continue token expired three times", kind)
		}
	}
}

func sortedRefs[T any](m map[events.AppRef][]T) []events.AppRef {
	refs := make([]events.AppRef, 0, len(m))
	for r := range m {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Namespace != refs[j].Namespace {
			return refs[i].Namespace < refs[j].Namespace
		}
		return refs[i].App < refs[j].App
	})
	return refs
}

// Metrics are the Watcher's Prometheus metrics.
type Metrics struct {
	changes       *prometheus.CounterVec
	rounds        *prometheus.CounterVec
	roundApps     *prometheus.GaugeVec
	roundDuration prometheus.Histogram
	invalid       prometheus.Counter
	steps         prometheus.Counter
	rebuilds      prometheus.Counter
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_changes_total",
			Help: "Changes of app objects emitted, by kind (pods, workflows, applications) and change (changed, deleted)."}, []string{"kind", "change"}),
		rounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dwp_watcher_rounds_total",
			Help: "Full-state rounds, by result."}, []string{"result"}),
		roundApps: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "dwp_watcher_round_apps",
			Help: "Apps with objects of a kind in the last full-state round."}, []string{"kind"}),
		roundDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dwp_watcher_round_duration_seconds",
			Help: "Duration of a full-state round (listing and queueing).", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "dwp_watcher_events_invalid_total",
			Help: "Events that could not be built from an object (a bug)."}),
	}
	m.steps = prometheus.NewCounter(prometheus.CounterOpts{Name: "dwp_watcher_steps_total",
		Help: "Step events emitted: a CD run's step waiting for the task function, sent again while it waits."})
	m.rebuilds = prometheus.NewCounter(prometheus.CounterOpts{Name: "dwp_watcher_rebuild_rounds_total",
		Help: "Full-state rounds run at once because the summaries had lost their state."})
	reg.MustRegister(m.changes, m.rounds, m.roundApps, m.roundDuration, m.invalid, m.steps, m.rebuilds)
	return m
}
