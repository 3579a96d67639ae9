package clustertest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/jackc/pgx/v5"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

func ptr[T any](v T) *T { return &v }

// waitUntil polls f every 100 ms until it returns true or the timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := f(ctx)
		if ok {
			return
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestDeploymentPodsRun(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	ctx := context.Background()
	labels := map[string]string{"app": "web"}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "2 pods Running and Ready", func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && podReady(&p) {
				ready++
			}
		}
		return ready == 2, fmt.Errorf("%d of %d pods ready", ready, len(pods.Items))
	})
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "deployment available", func(ctx context.Context) (bool, error) {
		dep, err = cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && dep.Status.AvailableReplicas == 2, err
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func runPod(t *testing.T, cs kubernetes.Interface, ns, name string, annotations map[string]string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	_, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	waitUntil(t, 30*time.Second, "pod Running", func(ctx context.Context) (bool, error) {
		pod, err = cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && pod.Status.Phase == corev1.PodRunning, err
	})
	return pod
}

func TestPodLogFollow(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	log := env.PodLog(t, ns, "logger", "main")
	if _, err := log.Append("before follow"); err != nil {
		t.Fatal(err)
	}
	runPod(t, cs, ns, "logger", nil)

	streamCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stream interface {
		Read([]byte) (int, error)
		Close() error
	}
	// kwok picks up the Logs object a moment after the pod runs.
	waitUntil(t, 15*time.Second, "log stream opens", func(context.Context) (bool, error) {
		s, err := cs.CoreV1().Pods(ns).GetLogs("logger", &corev1.PodLogOptions{Container: "main", Follow: true}).Stream(streamCtx)
		if err != nil {
			return false, err
		}
		stream = s
		return true, nil
	})
	defer stream.Close()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case got, ok := <-lines:
				if !ok {
					t.Fatalf("log stream ended before %q", want)
				}
				if got == want {
					return
				}
			case <-timer.C:
				t.Fatalf("line %q not read within %s", want, within)
			}
		}
	}
	expect("before follow", 5*time.Second)
	for i := range 3 {
		line := fmt.Sprintf("appended %d", i)
		start := time.Now()
		if _, err := log.Append(line); err != nil {
			t.Fatal(err)
		}
		expect(line, 2*time.Second)
		t.Logf("%q read back through pods/log?follow=true after %s", line, time.Since(start).Round(time.Microsecond))
	}
}

func TestWorkflowFromTemplateSucceedsAndIsArchived(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	wf, err := wfclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err = wf.ArgoprojV1alpha1().WorkflowTemplates(ns).Create(ctx, &wfv1.WorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "two-steps"},
		Spec: wfv1.WorkflowSpec{
			Entrypoint: "main",
			Templates: []wfv1.Template{
				{Name: "main", Steps: []wfv1.ParallelSteps{
					{Steps: []wfv1.WorkflowStep{{Name: "a", Template: "step"}}},
					{Steps: []wfv1.WorkflowStep{{Name: "b", Template: "step"}}},
				}},
				{Name: "step", Container: &corev1.Container{Image: "busybox", Command: []string{"true"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created, err := wf.ArgoprojV1alpha1().Workflows(ns).Create(ctx, &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "two-steps-"},
		Spec:       wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "two-steps"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got *wfv1.Workflow
	waitUntil(t, 90*time.Second, "workflow Succeeded", func(ctx context.Context) (bool, error) {
		got, err = wf.ArgoprojV1alpha1().Workflows(ns).Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if got.Status.Phase.Completed() && got.Status.Phase != wfv1.WorkflowSucceeded {
			t.Fatalf("workflow ended %s: %s", got.Status.Phase, got.Status.Message)
		}
		return got.Status.Phase == wfv1.WorkflowSucceeded, fmt.Errorf("phase %q", got.Status.Phase)
	})
	t.Logf("2-step workflow Succeeded %s after creation", time.Since(start).Round(100*time.Millisecond))

	conn, err := pgx.Connect(ctx, env.ArchiveDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	waitUntil(t, 30*time.Second, "workflow in the Postgres archive", func(ctx context.Context) (bool, error) {
		var phase, name string
		err := conn.QueryRow(ctx, "SELECT name, phase FROM argo_archived_workflows WHERE uid = $1", string(created.UID)).Scan(&name, &phase)
		if err == pgx.ErrNoRows {
			return false, err
		}
		if err != nil {
			return false, err
		}
		if name != created.Name || phase != string(wfv1.WorkflowSucceeded) {
			t.Fatalf("archived %s %s, want %s Succeeded", name, phase, created.Name)
		}
		return true, nil
	})
}

func TestServerSideDryRunAgainstCRDs(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	dyn := env.AdminDynamic(t)
	cases := []struct {
		name    string
		gvr     schema.GroupVersionResource
		obj     string
		wantErr bool
	}{
		{"knative service", schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"},
			`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"fn"},"spec":{"template":{"metadata":{"annotations":{"autoscaling.knative.dev/min-scale":"0"}},"spec":{"containerConcurrency":10,"containers":[{"image":"example.com/fn"}]}}}}`, false},
		{"knative service, bad containerConcurrency", schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"},
			`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"fn"},"spec":{"template":{"spec":{"containerConcurrency":"lots","containers":[{"image":"example.com/fn"}]}}}}`, true},
		{"trigger", schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"},
			`{"apiVersion":"eventing.knative.dev/v1","kind":"Trigger","metadata":{"name":"t"},"spec":{"broker":"default","filter":{"attributes":{"type":"io.dwp.pod.changed.v1"}},"subscriber":{"uri":"http://fn.default.svc/events"}}}`, false},
		{"trigger, subscriber of the wrong type", schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"},
			`{"apiVersion":"eventing.knative.dev/v1","kind":"Trigger","metadata":{"name":"t"},"spec":{"broker":"default","subscriber":12}}`, true},
		{"argo cd application", schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"},
			`{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"app"},"spec":{"project":"default","source":{"repoURL":"https://git.example.com/apps.git","path":"web","targetRevision":"main"},"destination":{"server":"https://kubernetes.default.svc","namespace":"web"}}}`, false},
		{"argo cd application without destination", schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"},
			`{"apiVersion":"argoproj.io/v1alpha1","kind":"Application","metadata":{"name":"app"},"spec":{"project":"default","source":{"repoURL":"https://git.example.com/apps.git"}}}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var obj unstructured.Unstructured
			if err := json.Unmarshal([]byte(tc.obj), &obj.Object); err != nil {
				t.Fatal(err)
			}
			_, err := dyn.Resource(tc.gvr).Namespace(ns).Create(context.Background(), &obj, metav1.CreateOptions{
				DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict",
			})
			if tc.wantErr {
				if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
					t.Fatalf("want a validation error, got %v", err)
				}
				t.Logf("rejected: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("dry-run create: %v", err)
			}
		})
	}
}

func TestPodMetrics(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	runPod(t, cs, ns, "busy", map[string]string{
		"kwok.x-k8s.io/usage-cpu":    "250m",
		"kwok.x-k8s.io/usage-memory": "64Mi",
	})
	mc, err := metricsclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// metrics-server needs two scrapes (15 s resolution) before it reports CPU.
	waitUntil(t, 90*time.Second, "PodMetrics for the pod", func(ctx context.Context) (bool, error) {
		pm, err := mc.MetricsV1beta1().PodMetricses(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(pm.Containers) != 1 {
			return false, fmt.Errorf("%d containers", len(pm.Containers))
		}
		cpu := pm.Containers[0].Usage.Cpu().MilliValue()
		mem := pm.Containers[0].Usage.Memory().Value()
		if cpu < 200 || cpu > 300 || mem != 64<<20 {
			return false, fmt.Errorf("usage cpu=%dm memory=%d", cpu, mem)
		}
		return true, nil
	})
	t.Logf("PodMetrics available %s after the pod ran", time.Since(start).Round(time.Second))
}

func TestUserWithoutRBACIsForbidden(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	bob, err := kubernetes.NewForConfig(env.UserConfig(t, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = bob.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("bob without RBAC: want 403, got %v", err)
	}
	env.Grant(t, ns, "bob", "view")
	waitUntil(t, 5*time.Second, "bob may list pods once granted view", func(ctx context.Context) (bool, error) {
		_, err := bob.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil, err
	})
	_, err = bob.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("bob with view creating a pod: want 403, got %v", err)
	}
	// An unknown token is not a user at all.
	anon := env.UserConfig(t, "alice")
	anon.BearerToken = "not-a-token"
	nobody, err := kubernetes.NewForConfig(anon)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nobody.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("unknown token: want 401, got %v", err)
	}
}

func TestAPIServerRestartKeepsState(t *testing.T) {
	env := clustertest.Private(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	env.RestartAPIServer(t)
	t.Logf("kube-apiserver restarted and ready in %s", time.Since(start).Round(10*time.Millisecond))
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(cm.Data["k"], "v") {
		t.Fatalf("configmap after restart: %v", cm.Data)
	}
}
