package upstream

import (
	"container/heap"
	"context"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// Argo's pod label and annotation naming a pod's workflow and its node.
const (
	workflowLabel      = "workflows.argoproj.io/workflow"
	nodeNameAnnotation = "workflows.argoproj.io/node-name"
)

// workflowLogOptions tune workflow log topics.
type workflowLogOptions struct {
	replay int
	// window is how long lines wait to be merged in time order with other pods' lines.
	window time.Duration
	// maxWait bounds how long any line waits.
	maxWait time.Duration
	// drainIdle: after a pod's container terminated, its follow is closed once no line
	// came for this long (some kubelets keep a follow of a finished container open).
	drainIdle time.Duration
	backoff   [2]time.Duration
}

// workflowLogTopic follows the logs of every pod of one workflow (found by Argo's
// workflow label, picked up as they appear) with one follow per pod, merges the lines in
// time order, and ends when the workflow has completed and every pod's log is read.
type workflowLogTopic struct {
	cs        kubernetes.Interface
	argo      argoclient.Interface
	ns, name  string
	container string
	opts      workflowLogOptions
	metrics   *hub.Metrics
	log       *slog.Logger

	ready     chan struct{}
	readyOnce sync.Once

	// Upstream state, sent to the Run loop.
	podUpdates chan podUpdate
	wfUpdates  chan wfUpdate
	lines      chan podLines
	followDone chan types.UID

	audience
	logRing
}

type podUpdate struct {
	pod     *corev1.Pod
	deleted bool
	// all is set for a full list: pods absent from it are gone.
	all []*corev1.Pod
}

type wfUpdate struct {
	exists    bool
	completed bool
	phase     string
}

type podLines struct {
	uid   types.UID
	pod   string
	node  string
	lines []logLine
}

func newWorkflowLogTopic(cs kubernetes.Interface, argo argoclient.Interface, ns, name, container string,
	opts workflowLogOptions, m *hub.Metrics, log *slog.Logger) *workflowLogTopic {
	return &workflowLogTopic{
		cs: cs, argo: argo, ns: ns, name: name, container: container, opts: opts, metrics: m, log: log,
		ready:      make(chan struct{}),
		podUpdates: make(chan podUpdate),
		wfUpdates:  make(chan wfUpdate),
		lines:      make(chan podLines),
		followDone: make(chan types.UID),
		logRing:    newLogRing(opts.replay),
	}
}

func (t *workflowLogTopic) markReady() { t.readyOnce.Do(func() { close(t.ready) }) }

// podFollower is the follow of one pod's log.
type podFollower struct {
	uid        types.UID
	pod        string
	node       string
	cancel     context.CancelFunc
	terminated atomic.Bool
	primed     atomic.Bool
	// lastActivity is when a line last came (Unix nanos), or when the pod terminated.
	lastActivity atomic.Int64
	done         bool
}

// Run follows the workflow and its pods until ctx ends or the workflow's log has ended.
func (t *workflowLogTopic) Run(ctx context.Context) {
	defer t.markReady()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	wfLoop := &listWatch{
		kind: string(api.KindWorkflowLog), metrics: t.metrics, log: t.log,
		fieldSelector: fields.OneTermEqualSelector("metadata.name", t.name).String(),
		minBackoff:    t.opts.backoff[0], maxBackoff: t.opts.backoff[1],
		lw: listWatcherFor(t.argo.ArgoprojV1alpha1().Workflows(t.ns)),
	}
	podLoop := &listWatch{
		kind: string(api.KindWorkflowLog), metrics: t.metrics, log: t.log,
		labelSelector: labels.Set{workflowLabel: t.name}.String(),
		minBackoff:    t.opts.backoff[0], maxBackoff: t.opts.backoff[1],
		lw: listWatcherFor(t.cs.CoreV1().Pods(t.ns)),
	}
	wg.Go(func() { wfLoop.run(ctx, &wfWatch{loopFeed[wfUpdate]{t: t, ctx: ctx, updates: t.wfUpdates}}) })
	wg.Go(func() { podLoop.run(ctx, &podWatch{loopFeed[podUpdate]{t: t, ctx: ctx, updates: t.podUpdates}}) })

	var (
		followers   = map[types.UID]*podFollower{}
		wf          wfUpdate
		wfKnown     bool
		merge       = &lineHeap{}
		tick        = time.NewTicker(max(t.opts.window/2, 10*time.Millisecond))
		seq         uint64
		podsSynced  bool
		finishAfter string
	)
	defer tick.Stop()

	startFollow := func(p *corev1.Pod) {
		if _, ok := followers[p.UID]; ok || !containerStarted(p, t.container) {
			return
		}
		fctx, fcancel := context.WithCancel(ctx)
		f := &podFollower{uid: p.UID, pod: p.Name, node: p.Annotations[nodeNameAnnotation], cancel: fcancel}
		f.lastActivity.Store(time.Now().UnixNano())
		followers[p.UID] = f
		wg.Go(func() { t.followPod(ctx, fctx, f) })
	}
	markTerminated := func(uid types.UID) {
		if f, ok := followers[uid]; ok && !f.terminated.Load() {
			f.lastActivity.Store(time.Now().UnixNano())
			f.terminated.Store(true)
		}
	}
	flush := func(all bool) {
		now := time.Now()
		allPrimed := true
		for _, f := range followers {
			if !f.done && !f.primed.Load() {
				allPrimed = false
			}
		}
		var out []logLine
		var meta []podLines
		for merge.Len() > 0 {
			top := (*merge)[0]
			if !all && !(allPrimed && !top.line.time.After(now.Add(-t.opts.window))) && now.Sub(top.arrived) < t.opts.maxWait {
				break
			}
			heap.Pop(merge)
			out = append(out, top.line)
			meta = append(meta, podLines{pod: top.pod, node: top.node})
		}
		t.publish(out, meta)
	}

	for {
		select {
		case <-ctx.Done():
			return
		case u := <-t.wfUpdates:
			wf, wfKnown = u, true
			if !u.exists {
				flush(true)
				if t.hasLines() {
					t.finish(hub.Event{}, "workflow-deleted")
				} else {
					t.finish(notFoundEvent("", fmt.Sprintf("workflow %s/%s not found: its logs may be archived", t.ns, t.name)), "not-found")
				}
				return
			}
			t.markReady()
		case u := <-t.podUpdates:
			if u.all != nil {
				podsSynced = true
				present := map[types.UID]bool{}
				for _, p := range u.all {
					present[p.UID] = true
					startFollow(p)
					if containerDone(p, t.container) {
						markTerminated(p.UID)
					}
				}
				for uid := range followers {
					if !present[uid] {
						markTerminated(uid)
					}
				}
				continue
			}
			if u.deleted {
				markTerminated(u.pod.UID)
				continue
			}
			startFollow(u.pod)
			if containerDone(u.pod, t.container) {
				markTerminated(u.pod.UID)
			}
		case pl := <-t.lines:
			now := time.Now()
			if f, ok := followers[pl.uid]; ok {
				f.lastActivity.Store(now.UnixNano())
			}
			for _, l := range pl.lines {
				seq++
				heap.Push(merge, &heapLine{line: l, pod: pl.pod, node: pl.node, arrived: now, seq: seq})
			}
		case uid := <-t.followDone:
			if f, ok := followers[uid]; ok {
				f.done = true
			}
		case <-tick.C:
			now := time.Now()
			for _, f := range followers {
				if !f.done && f.terminated.Load() && now.Sub(time.Unix(0, f.lastActivity.Load())) >= t.opts.drainIdle {
					f.cancel()
				}
			}
			flush(false)
		}
		if wfKnown && wf.completed && podsSynced && finishAfter == "" {
			finishAfter = "workflow-" + wf.phase
		}
		if finishAfter != "" {
			busy := false
			for _, f := range followers {
				if !f.done {
					busy = true
					// A completed workflow starts no more containers: drain what runs.
					markTerminated(f.uid)
				}
			}
			if !busy {
				flush(true)
				t.finish(hub.Event{}, finishAfter)
				return
			}
		}
	}
}

// followPod follows one pod's log, resuming after breaks, until the container is done
// and its log read, or ctx ends. runCtx is the Run loop's, which listens for the end of
// the follow until it returns itself.
func (t *workflowLogTopic) followPod(runCtx, ctx context.Context, f *podFollower) {
	defer func() {
		f.primed.Store(true)
		select {
		case t.followDone <- f.uid:
		case <-runCtx.Done():
		}
	}()
	parser := lineParser{}
	var last *api.LogPos
	backoff := t.opts.backoff[0]
	emit := func(lines []logLine) {
		f.primed.Store(true)
		lp := lines[len(lines)-1].pos
		last = &lp
		select {
		case t.lines <- podLines{uid: f.uid, pod: f.pod, node: f.node, lines: lines}:
		case <-ctx.Done():
		}
	}
	for ctx.Err() == nil {
		req := logRequest{container: t.container, follow: true}
		if last != nil {
			since := last.Time()
			req.since = &since
		}
		closed := t.metrics.UpstreamOpen(string(api.KindWorkflowLog), "follow")
		body, err := openLog(ctx, t.cs, t.ns, f.pod, req)
		if err == nil {
			parser = lineParser{}
			err = readLines(body, &parser, last, emit)
			body.Close()
		}
		closed()
		f.primed.Store(true)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if f.terminated.Load() {
				return
			}
			sleep(ctx, jitter(t.opts.backoff[0]))
			continue
		}
		t.metrics.Error(string(api.KindWorkflowLog))
		gone, waiting, fatal := logProblem(err)
		switch {
		case gone:
			return
		case fatal:
			t.log.Warn("workflow pod log unavailable", "namespace", t.ns, "pod", f.pod, "err", err)
			return
		case waiting:
			sleep(ctx, jitter(t.opts.backoff[0]))
		default:
			t.log.Warn("workflow pod log follow failed", "namespace", t.ns, "pod", f.pod, "err", err)
			sleep(ctx, jitter(backoff))
			backoff = min(2*backoff, t.opts.backoff[1])
		}
	}
}

func (t *workflowLogTopic) hasLines() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hasLast
}

// publish emits merged lines with positions that only grow: a late line from another
// pod keeps its real time in the payload but takes the next position after the last one
// sent, so that its id never repeats and resuming by id stays exact.
func (t *workflowLogTopic) publish(lines []logLine, meta []podLines) {
	if len(lines) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	events := make([]hub.Event, len(lines))
	for i, l := range lines {
		pos := api.LogPos{Nanos: l.time.UnixNano()}
		if t.hasLast && !t.last.Less(pos) {
			pos = api.LogPos{Nanos: t.last.Nanos, Rank: t.last.Rank + 1}
		}
		l.pos = pos
		events[i] = encodeLogLine(l, meta[i].pod, meta[i].node, "")
		t.push(pos, events[i])
	}
	t.fan.Broadcast(hub.NewMessage(false, events...))
}

func (t *workflowLogTopic) failing(err error) {
	// Subscribers waiting for the first state hear about the failure instead.
	defer t.markReady()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.failure = nil
		return
	}
	t.failLocked(hub.NewMessage(false, errorEvent(t.newestID(), err, true)))
}

// Subscribe implements Topic.
func (t *workflowLogTopic) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Lines no longer kept are announced before the ones that are.
	var events, kept []hub.Event
	if j.Resume.Set && !j.Resume.Ended {
		after := j.Resume.Log
		var lost bool
		if kept, lost = t.linesAfter(after); lost {
			events = append(events, errorEvent(after.String(), publicErrorf(api.CodeGap, "lines between this position and %s are no longer kept", t.ring.at(0).pos), true))
		}
	} else if kept = t.linesFrom(0); t.hasEvicted {
		events = append(events, errorEvent("", publicErrorf(api.CodeGap, "the first lines of this workflow's log are no longer kept"), true))
	}
	// Workflow logs take no follow parameter: they are always followed.
	t.joinLinesLocked(s, append(events, kept...), true)
	return nil
}

// loopFeed hands what one of the topic's watches sees to the Run loop, as updates U,
// and its failures to the subscribers.
type loopFeed[U any] struct {
	t       *workflowLogTopic
	ctx     context.Context
	updates chan<- U
}

func (f *loopFeed[U]) send(u U) {
	select {
	case f.updates <- u:
	case <-f.ctx.Done():
	}
}

func (f *loopFeed[U]) progress(string)   {}
func (f *loopFeed[U]) failing(err error) { f.t.failing(err) }

// wfWatch turns the workflow's watch into updates for the Run loop.
type wfWatch struct{ loopFeed[wfUpdate] }

func wfState(obj runtime.Object) wfUpdate {
	wf, ok := obj.(*wfv1.Workflow)
	if !ok {
		return wfUpdate{exists: true}
	}
	return wfUpdate{exists: true, completed: wf.Status.Phase.Completed(), phase: string(wf.Status.Phase)}
}

func (w *wfWatch) replace(items []runtime.Object, _ string, _ bool) {
	if len(items) == 0 {
		w.send(wfUpdate{})
		return
	}
	w.send(wfState(items[0]))
}

func (w *wfWatch) event(typ watch.EventType, obj runtime.Object, _ string) {
	if typ == watch.Deleted {
		w.send(wfUpdate{})
		return
	}
	w.send(wfState(obj))
}

// podWatch turns the pods' watch into updates for the Run loop.
type podWatch struct{ loopFeed[podUpdate] }

func (w *podWatch) replace(items []runtime.Object, _ string, _ bool) {
	all := make([]*corev1.Pod, 0, len(items))
	for _, o := range items {
		if p, ok := o.(*corev1.Pod); ok {
			all = append(all, p)
		}
	}
	w.send(podUpdate{all: all})
}

func (w *podWatch) event(typ watch.EventType, obj runtime.Object, _ string) {
	if p, ok := obj.(*corev1.Pod); ok {
		w.send(podUpdate{pod: p, deleted: typ == watch.Deleted})
	}
}

// lineHeap orders lines of several pods by time (then arrival).
type heapLine struct {
	line      logLine
	pod, node string
	arrived   time.Time
	seq       uint64
}

type lineHeap []*heapLine

func (h lineHeap) Len() int { return len(h) }
func (h lineHeap) Less(i, j int) bool {
	if !h[i].line.time.Equal(h[j].line.time) {
		return h[i].line.time.Before(h[j].line.time)
	}
	return h[i].seq < h[j].seq
}
func (h lineHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *lineHeap) Push(x any)   { *h = append(*h, x.(*heapLine)) }
func (h *lineHeap) Pop() any {
	old := *h
	n := len(old)
	x := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return x
}
