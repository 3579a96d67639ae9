package upstream

import (
	"context"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"
	"sync"
	"time"

	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	// window is how long lines wait to be merged in time order with other pods' lines,
	// and how long a pod's follow stays idle before it counts as at the end of its log.
	window time.Duration
	// maxWait bounds how long a line waits for pods at the end of their logs (whose
	// node's clock may lag), and for a pod's follow to give its first answer. Lines wait
	// as long as it takes for pods still reading their backlog.
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

	logAudience
	logRing
	// pods are the pods followed, for a resume that reads their logs again.
	pods []podRef
}

// podRef names a pod of the workflow and its Argo node, as its lines show them.
type podRef struct{ name, node string }

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
		merge       merger
		tick        = time.NewTicker(max(t.opts.window/2, 10*time.Millisecond))
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
		t.mu.Lock()
		t.pods = append(t.pods, podRef{name: f.pod, node: f.node})
		t.mu.Unlock()
		wg.Go(func() { t.followPod(ctx, fctx, f) })
	}
	markTerminated := func(uid types.UID) {
		if f, ok := followers[uid]; ok && !f.terminated.Load() {
			f.lastActivity.Store(time.Now().UnixNano())
			f.terminated.Store(true)
		}
	}
	flush := func(all bool) {
		t.publish(merge.take(all, followers, time.Now(), t.opts))
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
			if f, ok := followers[pl.uid]; ok && len(pl.lines) > 0 {
				f.lastActivity.Store(now.UnixNano())
				f.newest = max(f.newest, pl.lines[len(pl.lines)-1].pos.Nanos)
			}
			merge.add(pl, now)
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
	retry := newLogRetry(t.opts.backoff)
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
			retry.reset()
			retry.short(ctx)
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
			retry.short(ctx)
		default:
			t.log.Warn("workflow pod log follow failed", "namespace", t.ns, "pod", f.pod, "err", err)
			retry.backoff(ctx)
		}
	}
}

func (t *workflowLogTopic) hasLines() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hasLast
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
