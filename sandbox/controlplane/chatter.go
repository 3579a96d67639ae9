package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// kwok runs no containers, so a pod prints nothing. For a demo that looks alive, the
// launcher plays the app for pods that ask by annotation: it gives them a log served by
// kwok (a Logs object and a file per container) and appends a plausible line at the
// pod's pace; and it can make a pod crash-loop, as an app that cannot start would.
const (
	// annotLogEvery is how often a line is written, as a Go duration ("2s").
	annotLogEvery = "dwp.io/log-every"
	// annotLogStyle is what the lines look like: "access" (the default: an HTTP server's
	// requests) or "worker" (a queue consumer's jobs).
	annotLogStyle = "dwp.io/log-style"
	// annotCrashAfter makes the containers fail after running this long (a Go duration),
	// then wait in CrashLoopBackOff and start again, for ever.
	annotCrashAfter = "dwp.io/crash-after"

	minLogEvery = 100 * time.Millisecond
	// crashBackOff is the first wait in CrashLoopBackOff, doubled after each crash up to
	// maxCrashBackOff (the kubelet starts at 10 s too; its 5 min cap would be a dull demo).
	crashBackOff    = 10 * time.Second
	maxCrashBackOff = 40 * time.Second
)

// chatter is the controller behind those annotations.
type chatter struct {
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	logDir string
	logger *slog.Logger
	pods   cacheLister[*corev1.Pod]
	// crashBackOff is crashBackOff but for tests.
	crashBackOff time.Duration

	ctx     context.Context
	mu      sync.Mutex
	workers map[string]*chatterWorker // by namespace/name
	wg      sync.WaitGroup
}

type chatterWorker struct {
	uid    types.UID
	spec   string // the annotations it was started with
	cancel context.CancelFunc
}

// startChatter starts the controller; it stops when ctx ends, and wait returns once it and
// every pod's writer have.
func startChatter(ctx context.Context, cs kubernetes.Interface, dyn dynamic.Interface, logDir string, logger *slog.Logger) (wait func(), err error) {
	c := &chatter{cs: cs, dyn: dyn, logDir: logDir, logger: logger, crashBackOff: crashBackOff, ctx: ctx, workers: map[string]*chatterWorker{}}
	return startChatterWith(ctx, c)
}

func startChatterWith(ctx context.Context, c *chatter) (wait func(), err error) {
	f := informers.NewSharedInformerFactory(c.cs, 0)
	inf := f.Core().V1().Pods().Informer()
	c.pods = cacheLister[*corev1.Pod]{inf.GetStore()}
	l := newLoop(ctx, "pod chatter", c.logger, c.sync)
	if _, err := inf.AddEventHandler(l.handler()); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return
		}
		l.run(ctx)
	}()
	return func() {
		c.wg.Wait()
		f.Shutdown()
	}, nil
}

// chatterSpec is what a pod asks for; ok is false when it asks for nothing (or nonsense).
type chatterSpec struct {
	every, crashAfter time.Duration
	style             string
}

func parseChatter(ann map[string]string) (chatterSpec, bool) {
	s := chatterSpec{style: ann[annotLogStyle]}
	if v := ann[annotLogEvery]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minLogEvery {
			return s, false
		}
		s.every = d
	}
	if v := ann[annotCrashAfter]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return s, false
		}
		s.crashAfter = d
	}
	if s.style == "" {
		s.style = "access"
	}
	if s.style != "access" && s.style != "worker" {
		return s, false
	}
	return s, s.every > 0 || s.crashAfter > 0
}

func (s chatterSpec) String() string { return fmt.Sprintf("%s/%s/%s", s.every, s.crashAfter, s.style) }

// sync starts a pod's writer once it runs, and stops it when the pod goes; the log of a
// pod that is gone is removed with it.
func (c *chatter) sync(ctx context.Context, key string) error {
	pod, ok := c.pods.get(key)
	var spec chatterSpec
	want := ok && pod.DeletionTimestamp == nil && pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != ""
	if want {
		spec, want = parseChatter(pod.Annotations)
	}
	c.mu.Lock()
	w := c.workers[key]
	if w != nil && (!want || w.uid != pod.UID || w.spec != spec.String()) {
		w.cancel()
		delete(c.workers, key)
		w = nil
	}
	if want && w == nil {
		wctx, cancel := context.WithCancel(c.ctx)
		c.workers[key] = &chatterWorker{uid: pod.UID, spec: spec.String(), cancel: cancel}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(wctx, pod, spec)
		}()
	}
	c.mu.Unlock()
	if !ok {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		return c.forget(ctx, ns, name)
	}
	return nil
}

// forget removes the Logs object and files of a pod that is gone; only those the
// chatter made (kwok's Logs of other pods are someone else's).
func (c *chatter) forget(ctx context.Context, ns, name string) error {
	logs := c.dyn.Resource(kwokLogsGVR).Namespace(ns)
	obj, err := logs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.GetLabels()[labelChatter] != "true" {
		return nil
	}
	for _, f := range logFiles(obj) {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	err = logs.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: pointerTo(obj.GetUID())}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func pointerTo[T any](v T) *T { return &v }

// labelChatter marks the Logs objects the chatter made.
const labelChatter = "dwp.io/chatter"

// run is one pod's writer: lines at the pod's pace, and crashes when asked for.
func (c *chatter) run(ctx context.Context, pod *corev1.Pod, spec chatterSpec) {
	var files map[string]string
	err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return ctx.Err() == nil }, func() error {
		var err error
		files, err = c.ensureLogs(ctx, pod)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			c.logger.Warn("pod log", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
		return
	}
	h := fnv.New64a()
	h.Write([]byte(pod.UID))
	lw := newLineWriter(spec.style, pod.Name, rand.New(rand.NewPCG(h.Sum64(), 1)))
	write := func(lines func(time.Time) []string) {
		now := time.Now().UTC()
		for _, f := range files {
			if err := appendCRI(f, now, lines(now)); err != nil && ctx.Err() == nil {
				c.logger.Debug("pod log", "file", f, "err", err)
			}
		}
	}
	// A container starts once: when the plane starts again, its log carries on, as a
	// restarted kubelet leaves running containers be.
	if !written(files) {
		write(lw.startup)
	}

	var tick <-chan time.Time
	if spec.every > 0 {
		t := time.NewTicker(spec.every)
		defer t.Stop()
		tick = t.C
	}
	var crash <-chan time.Time
	armCrash := func() {
		if spec.crashAfter > 0 {
			crash = time.After(spec.crashAfter)
		}
	}
	armCrash()
	backOff := c.crashBackOff
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			write(func(now time.Time) []string { return []string{lw.line(now)} })
		case <-crash:
			write(lw.crash)
			if err := c.setCrashed(ctx, pod, backOff); err != nil {
				if ctx.Err() == nil && !apierrors.IsNotFound(err) {
					c.logger.Warn("pod crash", "pod", pod.Namespace+"/"+pod.Name, "err", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backOff):
			}
			backOff = min(2*backOff, maxCrashBackOff)
			if err := c.setRunning(ctx, pod); err != nil {
				if ctx.Err() == nil && !apierrors.IsNotFound(err) {
					c.logger.Warn("pod restart", "pod", pod.Namespace+"/"+pod.Name, "err", err)
				}
				return
			}
			write(lw.startup)
			armCrash()
		}
	}
}

// ensureLogs returns each container's log file, making the files and the kwok Logs
// object when the pod has none; one already there (the plane restarted) is kept.
func (c *chatter) ensureLogs(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	return ensureKwokLogs(ctx, c.dyn, c.logDir, pod, pod.Spec.Containers, map[string]any{labelChatter: "true"},
		func(file string, _ corev1.Container) error {
			f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		})
}

// written reports whether every log file already has lines.
func written(files map[string]string) bool {
	for _, f := range files {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			return false
		}
	}
	return len(files) > 0
}

// appendCRI appends lines to a log file in the CRI format kwok serves.
func appendCRI(file string, now time.Time, lines []string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i, l := range lines {
		fmt.Fprintf(w, "%s stdout F %s\n", now.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), l)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// setCrashed reports the pod's containers as crashed and waiting to start again, as the
// kubelet does for CrashLoopBackOff: not ready, one more restart, the last state
// terminated with exit code 1.
func (c *chatter) setCrashed(ctx context.Context, pod *corev1.Pod, backOff time.Duration) error {
	return c.updateStatus(ctx, pod, func(st *corev1.PodStatus, now metav1.Time) {
		for i := range st.ContainerStatuses {
			s := &st.ContainerStatuses[i]
			started := now
			if s.State.Running != nil {
				started = s.State.Running.StartedAt
			}
			s.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", StartedAt: started, FinishedAt: now,
			}}
			s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason:  "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", backOff, s.Name, pod.Name, pod.Namespace, pod.UID),
			}}
			s.Ready, s.Started = false, pointerTo(false)
			s.RestartCount++
		}
		setPodReady(st, now, false)
	})
}

// setRunning reports the containers running again.
func (c *chatter) setRunning(ctx context.Context, pod *corev1.Pod) error {
	return c.updateStatus(ctx, pod, func(st *corev1.PodStatus, now metav1.Time) {
		for i := range st.ContainerStatuses {
			s := &st.ContainerStatuses[i]
			s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
			s.Ready, s.Started = true, pointerTo(true)
		}
		setPodReady(st, now, true)
	})
}

func (c *chatter) updateStatus(ctx context.Context, pod *corev1.Pod, change func(*corev1.PodStatus, metav1.Time)) error {
	pods := c.cs.CoreV1().Pods(pod.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		change(&cur.Status, metav1.Now())
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{FieldManager: "dwp-cluster"})
		return err
	})
}

func setPodReady(st *corev1.PodStatus, now metav1.Time, ready bool) {
	status, reason := corev1.ConditionTrue, ""
	if !ready {
		status, reason = corev1.ConditionFalse, "ContainersNotReady"
	}
	for i := range st.Conditions {
		cond := &st.Conditions[i]
		if cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady {
			if cond.Status != status {
				cond.LastTransitionTime = now
			}
			cond.Status, cond.Reason = status, reason
		}
	}
}

// lineWriter makes what an app of a style prints.
type lineWriter struct {
	style, pod string
	rnd        *rand.Rand
	seq        int
}

func newLineWriter(style, pod string, rnd *rand.Rand) *lineWriter {
	return &lineWriter{style: style, pod: pod, rnd: rnd}
}

var (
	accessPaths = []string{"/", "/healthz", "/api/v1/orders", "/api/v1/orders/%d", "/api/v1/users/%d", "/api/v1/cart", "/static/app.js", "/login"}
	queues      = []string{"emails", "invoices", "thumbnails", "webhooks"}
)

// startup is what the app prints when it starts.
func (w *lineWriter) startup(time.Time) []string {
	switch w.style {
	case "worker":
		return []string{
			fmt.Sprintf(`level=info msg="starting worker" pod=%s concurrency=4`, w.pod),
			fmt.Sprintf(`level=info msg="subscribed" queues=%s`, strings.Join(queues, ",")),
		}
	default:
		return []string{
			fmt.Sprintf(`level=info msg="starting server" pod=%s addr=:8080`, w.pod),
			`level=info msg="connected to database" host=db:5432 pool=10`,
		}
	}
}

// line is one line of steady work: a request served, or a job done.
func (w *lineWriter) line(time.Time) string {
	w.seq++
	r := w.rnd
	switch w.style {
	case "worker":
		q := queues[r.IntN(len(queues))]
		job := 1000 + w.seq
		if r.IntN(20) == 0 {
			return fmt.Sprintf(`level=warn msg="job failed; retrying" queue=%s job=%d attempt=%d err="upstream timeout"`, q, job, 1+r.IntN(3))
		}
		return fmt.Sprintf(`level=info msg="job done" queue=%s job=%d duration=%dms`, q, job, 20+r.IntN(900))
	default:
		method := "GET"
		if r.IntN(5) == 0 {
			method = "POST"
		}
		path := accessPaths[r.IntN(len(accessPaths))]
		if strings.Contains(path, "%d") {
			path = fmt.Sprintf(path, 1+r.IntN(9999))
		}
		status, level := 200, "info"
		switch n := r.IntN(100); {
		case n < 2:
			status, level = 500, "error"
		case n < 4:
			status, level = 404, "warn"
		case n < 6 && method == "POST":
			status = 201
		}
		latency := time.Duration(2+r.IntN(120))*time.Millisecond + time.Duration(r.IntN(1000))*time.Microsecond
		return fmt.Sprintf(`level=%s method=%s path=%s status=%d bytes=%d latency=%s remote=10.1.%d.%d`,
			level, method, path, status, 200+r.IntN(4000), latency.Round(100*time.Microsecond), r.IntN(256), 1+r.IntN(254))
	}
}

// crash is what the app prints as it fails to start.
func (w *lineWriter) crash(time.Time) []string {
	return []string{
		`level=error msg="ping database" host=db:5432 err="dial tcp 10.0.0.53:5432: connect: connection refused"`,
		`level=fatal msg="cannot start: database unavailable after 3 attempts"`,
	}
}
