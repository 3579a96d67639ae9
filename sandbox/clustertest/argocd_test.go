package clustertest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

var applicationGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}

// gitRead clones the GitOps repository afresh and returns the file's content ("" when
// the file is absent).
func gitRead(t *testing.T, repoURL, name string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("git", "clone", "--quiet", "--branch", "main", repoURL, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("clone %s: %v: %s", repoURL, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGitServerServesPushes(t *testing.T) {
	env := clustertest.Get(t)
	path := "tests/" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")) + "-" + fmt.Sprint(time.Now().UnixNano()) + "/file.txt"
	cases := []struct {
		name, content string
	}{
		{"add a file", "one\n"},
		{"change it", "two\n"},
		{"delete it", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rev := env.GitPush(t, tc.name, map[string]string{path: tc.content})
			out, err := exec.Command("git", "ls-remote", env.GitopsRepo, "refs/heads/main").CombinedOutput()
			if err != nil {
				t.Fatalf("ls-remote: %v: %s", err, out)
			}
			// Tests of other packages push too: main is the pushed commit or a later one.
			if !strings.HasPrefix(string(out), rev) {
				t.Logf("main moved on past %s: %s", rev, out)
			}
			if got := gitRead(t, env.GitopsRepo, path); got != tc.content {
				t.Fatalf("served %q, want %q", got, tc.content)
			}
		})
	}
}

func TestPVCIsBoundAndGrows(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	ctx := context.Background()
	// No class: the API server gives it the plane's default one, as a real cluster does.
	_, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pvc := waitCapacity(t, cs, ns, "data", "1Gi")
	t.Logf("PVC Bound in %s", time.Since(start).Round(time.Millisecond))
	if c := pvc.Spec.StorageClassName; c == nil || *c != "standard" {
		t.Fatalf("storage class %v, want the default standard", c)
	}
	patch := []byte(`{"spec":{"resources":{"requests":{"storage":"3Gi"}}}}`)
	if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Patch(ctx, "data", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	waitCapacity(t, cs, ns, "data", "3Gi")
	t.Logf("PVC resized in %s", time.Since(start).Round(time.Millisecond))
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := pv.Spec.Capacity[corev1.ResourceStorage]; c.String() != "3Gi" {
		t.Fatalf("PV capacity %s, want 3Gi", c.String())
	}
	if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the released PV deleted", func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
}

// waitCapacity waits until the claim is Bound with the given capacity.
func waitCapacity(t *testing.T, cs kubernetes.Interface, ns, name, want string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc *corev1.PersistentVolumeClaim
	waitUntil(t, 30*time.Second, "PVC "+name+" Bound with "+want, func(ctx context.Context) (bool, error) {
		var err error
		pvc, err = cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := pvc.Status.Capacity[corev1.ResourceStorage]
		return pvc.Status.Phase == corev1.ClaimBound && c.String() == want,
			fmt.Errorf("phase %s, capacity %s", pvc.Status.Phase, c.String())
	})
	return pvc
}

func TestIngressGetsAnAddress(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	ctx := context.Background()
	pathType := networkingv1.PathTypePrefix
	cases := []struct {
		name  string
		class *string
		want  bool
	}{
		{"default class", nil, true},
		{"the sandbox class", ptr("sandbox"), true},
		{"a class nobody serves", ptr("nginx"), false},
	}
	for i, tc := range cases {
		_, err := cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%d", i)},
			Spec: networkingv1.IngressSpec{
				IngressClassName: tc.class,
				Rules: []networkingv1.IngressRule{{Host: "web.example", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pathType, Backend: networkingv1.IngressBackend{
						Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}},
					}}},
				}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	for i, tc := range cases {
		if !tc.want {
			continue
		}
		waitUntil(t, 10*time.Second, tc.name+": load-balancer address", func(ctx context.Context) (bool, error) {
			ing, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, fmt.Sprintf("web-%d", i), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			lb := ing.Status.LoadBalancer.Ingress
			return len(lb) == 1 && lb[0].IP == "127.0.0.1", fmt.Errorf("load balancer %+v", lb)
		})
	}
	for i, tc := range cases {
		if tc.want {
			continue
		}
		ing, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, fmt.Sprintf("web-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if lb := ing.Status.LoadBalancer.Ingress; len(lb) > 0 {
			t.Errorf("%s: got an address %+v", tc.name, lb)
		}
	}
}

// appManifests is an app as a team would keep it in git: a Deployment using a volume,
// its Service, the volume's claim and an Ingress.
func appManifests(size string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{containerPort: 80}]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: data}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests: {storage: ` + size + `}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: web.example
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
`
}

func TestArgoCDSyncsAnAppFromGitops(t *testing.T) {
	env := clustertest.Get(t)
	info := env.WaitArgoCD(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	apps := env.AdminDynamic(t).Resource(applicationGVR).Namespace(info.ArgoCDNamespace)
	ctx := context.Background()
	path := "apps/" + ns
	file := path + "/app.yaml"
	rev := env.GitPush(t, "add "+ns, map[string]string{file: appManifests("1Gi")})
	t.Cleanup(func() { env.GitPush(t, "remove "+ns, map[string]string{file: ""}) })

	app := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1",
		"kind":       "Application",
		"metadata": map[string]any{
			"name":       ns,
			"namespace":  info.ArgoCDNamespace,
			"finalizers": []any{"resources-finalizer.argocd.argoproj.io"},
		},
		"spec": map[string]any{
			"project":     "default",
			"source":      map[string]any{"repoURL": info.GitopsRepo, "targetRevision": "main", "path": path},
			"destination": map[string]any{"server": "https://kubernetes.default.svc", "namespace": ns},
			"syncPolicy":  map[string]any{"automated": map[string]any{"prune": true, "selfHeal": true}},
		},
	}}
	start := time.Now()
	if _, err := apps.Create(ctx, app, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = apps.Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	waitApp := func(what, revision string) *unstructured.Unstructured {
		t.Helper()
		var got *unstructured.Unstructured
		waitUntil(t, 2*time.Minute, what, func(ctx context.Context) (bool, error) {
			var err error
			if got, err = apps.Get(ctx, ns, metav1.GetOptions{}); err != nil {
				return false, err
			}
			return appState(got, revision)
		})
		return got
	}
	got := waitApp("Application Synced and Healthy", rev)
	t.Logf("Application Synced and Healthy %s after creation", time.Since(start).Round(100*time.Millisecond))
	resources, _, _ := unstructured.NestedSlice(got.Object, "status", "resources")
	kinds := map[string]string{}
	for _, r := range resources {
		m, _ := r.(map[string]any)
		health, _, _ := unstructured.NestedString(m, "health", "status")
		kinds[fmt.Sprint(m["kind"])] = health
	}
	for _, kind := range []string{"Deployment", "Service", "PersistentVolumeClaim", "Ingress"} {
		if kinds[kind] != "Healthy" {
			t.Errorf("%s health %q, want Healthy (resources: %v)", kind, kinds[kind], kinds)
		}
	}

	// A resize is a commit: Argo CD applies the larger request, the plane's resizer grows
	// the volume. The refresh annotation spares the wait for the next poll.
	rev = env.GitPush(t, "grow "+ns, map[string]string{file: appManifests("2Gi")})
	start = time.Now()
	refresh := []byte(`{"metadata":{"annotations":{"argocd.argoproj.io/refresh":"hard"}}}`)
	if _, err := apps.Patch(ctx, ns, types.MergePatchType, refresh, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitApp("Application Synced on the resize commit", rev)
	pvc := waitCapacity(t, cs, ns, "data", "2Gi")
	t.Logf("resize committed → Synced and status.capacity 2Gi in %s", time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	if err := apps.Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone := []struct {
		what string
		get  func(context.Context) error
	}{
		{"Application", func(ctx context.Context) error { _, err := apps.Get(ctx, ns, metav1.GetOptions{}); return err }},
		{"Deployment", func(ctx context.Context) error {
			_, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
			return err
		}},
		{"Service", func(ctx context.Context) error {
			_, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			return err
		}},
		{"PersistentVolumeClaim", func(ctx context.Context) error {
			_, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			return err
		}},
		{"Ingress", func(ctx context.Context) error {
			_, err := cs.NetworkingV1().Ingresses(ns).Get(ctx, "web", metav1.GetOptions{})
			return err
		}},
		{"PersistentVolume", func(ctx context.Context) error {
			_, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
			return err
		}},
	}
	for _, g := range gone {
		waitUntil(t, time.Minute, g.what+" deleted", func(ctx context.Context) (bool, error) {
			err := g.get(ctx)
			return apierrors.IsNotFound(err), err
		})
	}
	t.Logf("Application and everything it made deleted in %s", time.Since(start).Round(100*time.Millisecond))
}

// appState says whether an Application is Synced (on revision, when given) and Healthy,
// and if not, why.
func appState(app *unstructured.Unstructured, revision string) (bool, error) {
	sync, _, _ := unstructured.NestedString(app.Object, "status", "sync", "status")
	synced, _, _ := unstructured.NestedString(app.Object, "status", "sync", "revision")
	health, _, _ := unstructured.NestedString(app.Object, "status", "health", "status")
	if sync == "Synced" && health == "Healthy" && (revision == "" || synced == revision) {
		return true, nil
	}
	msg, _, _ := unstructured.NestedString(app.Object, "status", "operationState", "message")
	conds, _, _ := unstructured.NestedSlice(app.Object, "status", "conditions")
	return false, fmt.Errorf("sync %q at %.7s, health %q, operation %q, conditions %v", sync, synced, health, msg, conds)
}
