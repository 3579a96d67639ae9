package ssebench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dwp-sre/dwp-sre/sandbox/controlplane"
)

// viewer is the test user the bench's streams authenticate as; it gets "view" in the
// bench's namespaces.
const viewer = "carol"

// Cluster is the control plane as the bench uses it: two namespaces of its own (one for
// logs, one holding a single watched pod) and the viewer's rights in both.
type Cluster struct {
	Info    controlplane.Info
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	NS      string // pods whose logs are streamed
	WatchNS string // one pod, whose annotation changes are the pods stream's events
	// Token is the viewer's bearer token; AdminToken the admin's (for the naive side).
	Token, AdminToken string
}

// ConnectCluster reads the plane's info.json in dir.
func ConnectCluster(dir string) (*Cluster, error) {
	info, err := controlplane.ReadInfo(dir)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", info.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	c := &Cluster{Info: info, cs: cs, dyn: dyn, Token: info.Tokens[viewer], AdminToken: info.Tokens["admin"]}
	if c.Token == "" || c.AdminToken == "" {
		return nil, fmt.Errorf("info.json has no token for %s or admin", viewer)
	}
	return c, nil
}

func suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Setup creates the namespaces, grants the viewer "view" in both, grants every
// ServiceAccount of NS "view" too (the distinct-users scenario), and makes the watched pod.
func (c *Cluster) Setup(ctx context.Context) error {
	s := suffix()
	c.NS, c.WatchNS = "ssebench-"+s, "ssebench-watch-"+s
	for _, ns := range []string{c.NS, c.WatchNS} {
		_, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"dwp.bench": "true"}},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
		subjects := []rbacv1.Subject{
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: viewer},
			{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:serviceaccounts:" + c.NS},
		}
		_, err = c.cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "ssebench-view"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
			Subjects:   subjects,
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("grant view in %s: %w", ns, err)
		}
	}
	for _, ns := range []string{c.NS, c.WatchNS} {
		for _, a := range []authorizationv1.ResourceAttributes{
			{Namespace: ns, Verb: "get", Resource: "pods", Subresource: "log"},
			{Namespace: ns, Verb: "watch", Resource: "pods"},
		} {
			if err := c.waitAllowed(ctx, a); err != nil {
				return err
			}
		}
	}
	if err := c.runPod(ctx, c.WatchNS, "watched"); err != nil {
		return err
	}
	return nil
}

// waitAllowed waits until the authorizer has seen the binding (it learns of it by a watch).
func (c *Cluster) waitAllowed(ctx context.Context, a authorizationv1.ResourceAttributes) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		sar, err := c.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: viewer, ResourceAttributes: &a},
		}, metav1.CreateOptions{})
		if err == nil && sar.Status.Allowed {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still denied %+v: %w", viewer, a, errOr(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Teardown deletes the namespaces (and so their pods and bindings).
func (c *Cluster) Teardown(ctx context.Context) {
	for _, ns := range []string{c.NS, c.WatchNS} {
		if ns != "" {
			_ = c.cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		}
	}
}

func (c *Cluster) runPod(ctx context.Context, ns, name string) error {
	_, err := c.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		pod, err := c.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && pod.Status.Phase == corev1.PodRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s not running: %w", ns, name, errOr(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var logsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

// LogSource is a pod in NS whose container "main" logs what the bench appends to the
// file kwok serves it from.
type LogSource struct {
	Pod       string
	path      string
	lineBytes int
	mu        sync.Mutex
	seq       atomic.Int64
}

// NewLog makes a running pod whose log is served from a fresh file, pre-filled with
// prefill bytes of lines, and waits until the API server serves it.
func (c *Cluster) NewLog(ctx context.Context, pod string, lineBytes int, prefill int64) (*LogSource, error) {
	dir := filepath.Join(c.Info.LogDir, c.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log folder: %w", err)
	}
	l := &LogSource{Pod: pod, path: filepath.Join(dir, pod+"_main.log"), lineBytes: lineBytes}
	if err := os.WriteFile(l.path, nil, 0o644); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if prefill > 0 {
		if err := l.prefill(prefill); err != nil {
			return nil, err
		}
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "Logs",
		"metadata":   map[string]any{"name": pod, "namespace": c.NS},
		"spec": map[string]any{"logs": []any{map[string]any{
			"containers": []any{"main"}, "logsFile": l.path, "follow": true,
		}}},
	}}
	if _, err := c.dyn.Resource(logsGVR).Namespace(c.NS).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("kwok Logs for %s: %w", pod, err)
	}
	if err := c.runPod(ctx, c.NS, pod); err != nil {
		return nil, err
	}
	// kwok picks up the Logs object a moment after the pod runs.
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	one := int64(1)
	for {
		_, err := c.cs.CoreV1().Pods(c.NS).GetLogs(pod, &corev1.PodLogOptions{Container: "main", TailLines: &one}).DoRaw(ctx)
		if err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("log of %s not served: %w", pod, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StreamPath is the router's stream of this log.
func (l *LogSource) StreamPath(ns, query string) string {
	return "/api/v1/stream/namespaces/" + ns + "/pods/" + l.Pod + "/log?container=main" + query
}

// Next is the sequence number the next line will carry.
func (l *LogSource) Next() int64 { return l.seq.Load() }

func (l *LogSource) text(seq int64, now time.Time) string {
	s := Marker(seq, now.UnixNano())
	if pad := l.lineBytes - len(s) - 1; pad > 0 {
		s += " " + strings.Repeat("x", pad)
	}
	return s
}

// Emit appends n lines in one write (a burst the router reads at once) and returns the
// sequence numbers of the first and last.
func (l *LogSource) Emit(_ context.Context, n int) (first, last int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	now := time.Now().UTC()
	first = l.seq.Load()
	for i := range n {
		ts := now.Add(time.Duration(i)) // distinct stamps: the router's ids are positions
		fmt.Fprintf(w, "%s stdout F %s\n", ts.Format(time.RFC3339Nano), l.text(first+int64(i), now))
	}
	l.seq.Add(int64(n))
	if err := w.Flush(); err != nil {
		return 0, 0, fmt.Errorf("append log: %w", err)
	}
	return first, first + int64(n) - 1, nil
}

// prefill writes about size bytes of lines stamped an hour ago, one nanosecond apart.
func (l *LogSource) prefill(size int64) error {
	f, err := os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	base := time.Now().UTC().Add(-time.Hour)
	var written int64
	for i := int64(0); written < size; i++ {
		ts := base.Add(time.Duration(i))
		n, _ := fmt.Fprintf(w, "%s stdout F %s\n", ts.Format(time.RFC3339Nano), l.text(l.seq.Add(1)-1, ts))
		written += int64(n)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("prefill log: %w", err)
	}
	return nil
}

// WatchSource changes an annotation of the watched pod: each change is a `modified` event
// of the pods stream, carrying the marker in the object.
type WatchSource struct {
	c   *Cluster
	seq atomic.Int64
}

// StreamPath is the router's pods stream of the watched namespace.
func (w *WatchSource) StreamPath() string {
	return "/api/v1/stream/namespaces/" + w.c.WatchNS + "/pods"
}

// Next is the sequence number the next change will carry.
func (w *WatchSource) Next() int64 { return w.seq.Load() }

// Emit makes n changes one after the other.
func (w *WatchSource) Emit(ctx context.Context, n int) (first, last int64, err error) {
	first = w.seq.Load()
	for range n {
		seq := w.seq.Add(1) - 1
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"dwp.bench/sent":%q}}}`, Marker(seq, time.Now().UnixNano()))
		if _, err := w.c.cs.CoreV1().Pods(w.c.WatchNS).Patch(ctx, "watched", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return 0, 0, fmt.Errorf("annotate pod: %w", err)
		}
	}
	return first, first + int64(n) - 1, nil
}

// Source is what makes events: a pod log or the watched pod.
type Source interface {
	Emit(ctx context.Context, n int) (first, last int64, err error)
	Next() int64
}

// ServiceAccountTokens makes n ServiceAccounts in NS and a token of each (TokenRequest):
// n distinct users, all with "view" through their group.
func (c *Cluster) ServiceAccountTokens(ctx context.Context, n int) ([]string, error) {
	tokens := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	hour := int64(3600)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("viewer-%04d", i)
			_, err := c.cs.CoreV1().ServiceAccounts(c.NS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				errs[i] = fmt.Errorf("service account %s: %w", name, err)
				return
			}
			tr, err := c.cs.CoreV1().ServiceAccounts(c.NS).CreateToken(ctx, name, &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour},
			}, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("token of %s: %w", name, err)
				return
			}
			tokens[i] = tr.Status.Token
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return tokens, nil
}
