package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	wfinformers "github.com/argoproj/argo-workflows/v3/pkg/client/informers/externalversions/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	function "github.com/dwp-sre/dwp-sre"
	"github.com/dwp-sre/dwp-sre/internal/eventauth"
	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/watcher/internal/state"
)

// watcherBinary builds this command into the test's temporary folder.
func watcherBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "watcher")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var listenRE = regexp.MustCompile(`"msg":"watcher serving health and metrics","address":"([^"]+)"`)

// watcherProc is a running watcher process.
type watcherProc struct {
	cmd    *exec.Cmd
	log    string
	listen string
	done   chan struct{}
}

func startWatcher(t *testing.T, bin string, env []string) *watcherProc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "watcher-*.log")
	if err != nil {
		t.Fatal(err)
	}
	// The watcher sends as its ServiceAccount, the function's one allowed sender.
	tokenFile, _ := clustertest.Get(t).SenderToken(t, "default", "dwp-watcher", testAudience)
	env = append(slices.Clip(env), "DWP_SINK_TOKEN_FILE="+tokenFile)
	cmd := exec.Command(bin)
	// Port 0: the watcher logs the address it got, so no other process can take it first.
	cmd.Env = append(append(os.Environ(), env...), "DWP_LISTEN_ADDRESS=127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &watcherProc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	for deadline := time.Now().Add(20 * time.Second); p.listen == ""; time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(p.log)
		if m := listenRE.FindSubmatch(b); m != nil {
			p.listen = string(m[1])
		} else if time.Now().After(deadline) {
			p.stop(syscall.SIGKILL)
			t.Fatalf("the watcher did not start serving:\n%s", tail(b, 4096))
		}
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("watcher log (last 4 KiB):\n%s", tail(b, 4096))
		}
	})
	return p
}

func (p *watcherProc) stop(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *watcherProc) get(path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.listen + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// recordedEvent is one CloudEvent request the function accepted.
type recordedEvent struct {
	header http.Header
	body   []byte
}

// testAudience is the function's audience in these tests; watcherIdentity its one sender.
const (
	testAudience    = "dwp-function-test"
	watcherIdentity = "system:serviceaccount:default:dwp-watcher"
)

// functionServer serves the real function (every family) over HTTP, recording the
// events it accepts.
type functionServer struct {
	*httptest.Server
	fn *function.Function

	mu       sync.Mutex
	accepted []recordedEvent
}

func startFunction(t *testing.T, cfg map[string]string) *functionServer {
	t.Helper()
	fn := function.New()
	ctx := context.Background()
	cfg = maps.Clone(cfg)
	cfg[eventauth.EnvAudience], cfg[eventauth.EnvSenders] = testAudience, watcherIdentity
	if err := fn.Start(ctx, cfg); err != nil {
		t.Fatalf("start the function: %v", err)
	}
	fs := &functionServer{fn: fn}
	fs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != function.EventsPath {
			fn.Handle(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		fn.Handle(rec, r)
		if rec.Code/100 == 2 {
			fs.mu.Lock()
			fs.accepted = append(fs.accepted, recordedEvent{header: r.Header.Clone(), body: body})
			fs.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() {
		fs.Close()
		_ = fn.Stop(context.Background())
	})
	return fs
}

func (fs *functionServer) recorded() []recordedEvent {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]recordedEvent(nil), fs.accepted...)
}

// deliver posts a recorded event to the function, as the broker would.
func deliver(t *testing.T, h http.Handler, ev recordedEvent) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, function.EventsPath, bytes.NewReader(ev.body))
	req.Header = ev.header.Clone()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// summaryKey renders what a summary says, but its revision: the watcher leaves out
// changes that do not alter the state it sends, so its revision may be older than the
// objects' resourceVersions while everything shown is the same.
func summaryKey(s *events.AppSummary) string {
	if s == nil {
		return "<none>"
	}
	k := fmt.Sprintf("%s pods=%d ready=%d restarts=%d updated=%s", s.Run.State, s.Run.Pods, s.Run.Ready, s.Run.Restarts, s.UpdatedAt.Format(time.RFC3339))
	if c := s.CICD; c != nil {
		k += fmt.Sprintf(" cicd=%s/%s/%s created=%s started=%s finished=%s msg=%q", c.Workflow, c.Phase, c.Task,
			c.CreatedAt.Format(time.RFC3339), c.StartedAt.Format(time.RFC3339), c.FinishedAt.Format(time.RFC3339), c.Message)
	}
	return k
}

// oracle follows the test namespace's pods and workflows with informers of its own and
// records, for every app, each change of the summary the cluster's state calls for.
type oracle struct {
	cluster, ns string

	mu      sync.Mutex
	pods    map[string]*corev1.Pod
	wfs     map[string]*wfv1.Workflow
	current map[string]string
	history map[string][]stamped
}

type stamped struct {
	at time.Time
	v  string
}

func startOracle(t *testing.T, ctx context.Context, kube kubernetes.Interface, argo wfclient.Interface, cluster, ns string) *oracle {
	t.Helper()
	o := &oracle{cluster: cluster, ns: ns, pods: map[string]*corev1.Pod{}, wfs: map[string]*wfv1.Workflow{},
		current: map[string]string{}, history: map[string][]stamped{}}
	pods := coreinformers.NewFilteredPodInformer(kube, ns, 0, cache.Indexers{}, func(opts *metav1.ListOptions) {
		opts.LabelSelector = "app,!" + state.LabelWorkflowPod
	})
	wfs := wfinformers.NewFilteredWorkflowInformer(argo, ns, 0, cache.Indexers{}, func(opts *metav1.ListOptions) { opts.LabelSelector = "app" })
	handler := func(put func(obj any, present bool)) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { put(obj, true) },
			UpdateFunc: func(_, obj any) { put(obj, true) },
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				put(obj, false)
			},
		}
	}
	_, _ = pods.AddEventHandler(handler(func(obj any, present bool) {
		p := obj.(*corev1.Pod)
		o.mu.Lock()
		defer o.mu.Unlock()
		if present {
			o.pods[string(p.UID)] = p
		} else {
			delete(o.pods, string(p.UID))
		}
		o.recomputeLocked()
	}))
	_, _ = wfs.AddEventHandler(handler(func(obj any, present bool) {
		w := obj.(*wfv1.Workflow)
		o.mu.Lock()
		defer o.mu.Unlock()
		if present {
			o.wfs[string(w.UID)] = w
		} else {
			delete(o.wfs, string(w.UID))
		}
		o.recomputeLocked()
	}))
	go pods.RunWithContext(ctx)
	go wfs.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, wfs.HasSynced) {
		t.Fatal("oracle informers did not sync")
	}
	return o
}

func ordering(rv string) events.Ordering {
	o, _ := events.ParseOrdering(rv)
	return o
}

func (o *oracle) recomputeLocked() {
	now := time.Now()
	podsOf := map[string][]events.Pod{}
	wfsOf := map[string][]events.Workflow{}
	apps := map[string]bool{}
	for _, p := range o.pods {
		app := p.Labels["app"]
		podsOf[app] = append(podsOf[app], state.Pod(p, app, ordering(p.ResourceVersion)))
		apps[app] = true
	}
	for _, w := range o.wfs {
		app := w.Labels["app"]
		wfsOf[app] = append(wfsOf[app], state.Workflow(w, app, "dwp.io/task", ordering(w.ResourceVersion)))
		apps[app] = true
	}
	for app := range o.current {
		apps[app] = true
	}
	for app := range apps {
		v := "<none>"
		if s, ok := summarystore.Summarize(o.cluster, o.ns, app, podsOf[app], wfsOf[app]); ok {
			v = summaryKey(&s)
		}
		if o.current[app] != v {
			o.current[app] = v
			o.history[app] = append(o.history[app], stamped{now, v})
		}
	}
}

// expected is what every app's summary should be now ("<none>" for no summary).
func (o *oracle) expected() map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]string{}
	for app, v := range o.current {
		if v != "<none>" {
			out[app] = v
		}
	}
	return out
}

// lastChange is when the expected summaries last changed.
func (o *oracle) lastChange() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	var last time.Time
	for _, h := range o.history {
		if n := len(h); n > 0 && h[n-1].at.After(last) {
			last = h[n-1].at
		}
	}
	return last
}

// sampler reads the summaries from Redis every 20 ms.
type sampler struct {
	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at   time.Time
	apps map[string]string
}

func startSampler(ctx context.Context, store *summarystore.Store, cluster, ns string) *sampler {
	s := &sampler{}
	go func() {
		for ctx.Err() == nil {
			all, err := store.Summaries(ctx, cluster, ns)
			if err == nil {
				apps := map[string]string{}
				for _, sum := range all[ns] {
					apps[sum.App] = summaryKey(&sum)
				}
				s.mu.Lock()
				s.samples = append(s.samples, sample{time.Now(), apps})
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

// at is the last sample taken at or before t.
func (s *sampler) at(t time.Time) (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.samples), func(i int) bool { return s.samples[i].at.After(t) })
	if i == 0 {
		return sample{}, false
	}
	return s.samples[i-1], true
}

// checkWithin checks that every expected summary that held for at least lag, seen
// during [from, to], was in Redis lag after it came to be; it returns the slowest
// observed delay from the expected change to Redis showing it.
func checkWithin(t *testing.T, o *oracle, s *sampler, from, to time.Time, lag time.Duration) (checked int, slowest time.Duration) {
	t.Helper()
	o.mu.Lock()
	history := map[string][]stamped{}
	for app, h := range o.history {
		history[app] = append([]stamped(nil), h...)
	}
	o.mu.Unlock()
	s.mu.Lock()
	samples := append([]sample(nil), s.samples...)
	s.mu.Unlock()
	for app, h := range history {
		for i, st := range h {
			end := to
			if i+1 < len(h) {
				end = h[i+1].at
			}
			if st.at.Before(from) || st.at.After(to) || end.Sub(st.at) < lag {
				continue
			}
			checked++
			got, ok := s.at(st.at.Add(lag))
			gv := "<none>"
			if v, has := got.apps[app]; has {
				gv = v
			}
			if !ok || gv != st.v {
				t.Errorf("app %s: expected since %s:\n  %s\nbut Redis had %s later:\n  %s", app, st.at.Format("15:04:05.000"), st.v, lag, gv)
				continue
			}
			// The first sample showing it, for the report.
			for _, smp := range samples {
				if !smp.at.Before(st.at.Add(-lag)) {
					v, has := smp.apps[app]
					if !has {
						v = "<none>"
					}
					if v == st.v {
						if d := smp.at.Sub(st.at); d > slowest {
							slowest = d
						}
						break
					}
				}
			}
		}
	}
	return checked, slowest
}

// waitConverged waits until Redis holds exactly the expected summaries, and returns
// how long it took.
func waitConverged(t *testing.T, what string, o *oracle, store *summarystore.Store, cluster, ns string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var got, want map[string]string
	for time.Since(start) < timeout {
		want = o.expected()
		all, err := store.Summaries(context.Background(), cluster, ns)
		if err == nil {
			got = map[string]string{}
			for _, sum := range all[ns] {
				got[sum.App] = summaryKey(&sum)
			}
			if len(want) > 0 && equalMaps(got, want) {
				return time.Since(start)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: summaries not converged after %s\n got  %s\n want %s", what, timeout, render(got), render(want))
	return 0
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func render(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n   %s: %s", k, m[k])
	}
	return b.String()
}

// waitStable waits until the expected summaries have not changed for quiet, with every
// workflow finished and every pod ready, or fails after timeout.
func waitStable(t *testing.T, o *oracle, quiet, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		settled := true
		for _, w := range o.wfs {
			if !w.Status.Phase.Completed() {
				settled = false
			}
		}
		for _, p := range o.pods {
			if p.DeletionTimestamp != nil {
				settled = false
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
					settled = false
				}
			}
		}
		o.mu.Unlock()
		if settled && time.Since(o.lastChange()) >= quiet {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the cluster did not settle in %s: %s", timeout, render(o.expected()))
}

// waitGone waits until the cluster has no pod or workflow of app left.
func waitGone(t *testing.T, o *oracle, app string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, ok := o.expected()[app]; !ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s still has pods or workflows after %s", app, timeout)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
