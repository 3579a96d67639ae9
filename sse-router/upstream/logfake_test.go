package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	fakerest "k8s.io/client-go/rest/fake"
)

// fakeLogs serves pods' logs to a fake clientset as the API server does: timestamps,
// sinceTime (whole seconds), tailLines, and follow (the lines appended later, until the
// request ends). It counts the reads.
type fakeLogs struct {
	mu    sync.Mutex
	lines map[string][]fakeLine
	grew  chan struct{}
	// gate, when set, holds each whole-log read (no tail, no sinceTime) until closed.
	gate chan struct{}

	fetches, wholeReads, follows atomic.Int64
}

type fakeLine struct {
	ts   time.Time
	text string
}

func newFakeLogs() *fakeLogs {
	return &fakeLogs{lines: map[string][]fakeLine{}, grew: make(chan struct{})}
}

// add appends lines to pod's log, all stamped ts.
func (f *fakeLogs) add(pod string, ts time.Time, texts ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, text := range texts {
		f.lines[pod] = append(f.lines[pod], fakeLine{ts: ts.UTC(), text: text})
	}
	close(f.grew)
	f.grew = make(chan struct{})
}

func (l fakeLine) String() string { return l.ts.Format(time.RFC3339Nano) + " " + l.text + "\n" }

func (f *fakeLogs) body(ctx context.Context, pod string, o *corev1.PodLogOptions) io.ReadCloser {
	f.mu.Lock()
	all := f.lines[pod]
	start := sort.Search(len(all), func(i int) bool { return o.SinceTime == nil || !all[i].ts.Before(o.SinceTime.Time) })
	if o.TailLines != nil {
		start = max(start, len(all)-int(*o.TailLines))
	}
	var b strings.Builder
	for _, l := range all[start:] {
		b.WriteString(l.String())
	}
	next, grew, gate := len(all), f.grew, f.gate
	f.mu.Unlock()
	if !o.Follow {
		f.fetches.Add(1)
		if o.TailLines == nil && o.SinceTime == nil {
			f.wholeReads.Add(1)
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
				}
			}
		}
		return io.NopCloser(strings.NewReader(b.String()))
	}
	f.follows.Add(1)
	pr, pw := io.Pipe()
	go func() {
		_, err := io.WriteString(pw, b.String())
		for err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
				continue
			case <-grew:
			}
			f.mu.Lock()
			var more strings.Builder
			for _, l := range f.lines[pod][next:] {
				more.WriteString(l.String())
			}
			next, grew = len(f.lines[pod]), f.grew
			f.mu.Unlock()
			_, err = io.WriteString(pw, more.String())
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// logsClientset is a fake clientset whose pods' logs come from logs.
type logsClientset struct {
	*fake.Clientset
	logs *fakeLogs
}

func newLogsClientset(logs *fakeLogs, objects ...runtime.Object) *logsClientset {
	return &logsClientset{Clientset: fake.NewSimpleClientset(objects...), logs: logs}
}

func (c *logsClientset) CoreV1() typedcorev1.CoreV1Interface {
	return &logsCoreV1{CoreV1Interface: c.Clientset.CoreV1(), logs: c.logs}
}

type logsCoreV1 struct {
	typedcorev1.CoreV1Interface
	logs *fakeLogs
}

func (c *logsCoreV1) Pods(ns string) typedcorev1.PodInterface {
	return &logsPods{PodInterface: c.CoreV1Interface.Pods(ns), logs: c.logs}
}

type logsPods struct {
	typedcorev1.PodInterface
	logs *fakeLogs
}

func (p *logsPods) GetLogs(name string, o *corev1.PodLogOptions) *rest.Request {
	c := &fakerest.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		GroupVersion:         corev1.SchemeGroupVersion,
		VersionedAPIPath:     fmt.Sprintf("/api/v1/namespaces/ns/pods/%s/log", name),
		Client: fakerest.CreateHTTPClient(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"text/plain"}}, Body: p.logs.body(r.Context(), name, o)}, nil
		}),
	}
	return c.Request()
}

// runningWorkflowPod is a running pod of the workflow wf (when set) with one container, main.
func runningWorkflowPod(name, wf string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), Annotations: map[string]string{nodeNameAnnotation: "node-" + name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}, RestartPolicy: corev1.RestartPolicyNever},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "main", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
	if wf != "" {
		p.Labels = map[string]string{workflowLabel: wf}
	}
	return p
}
