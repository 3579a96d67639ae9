package deploy_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/dwp-sre/dwp-sre/internal/runner"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// podTemplate is one pod an overlay would have run: its workload, and the Pod made of its
// template as the workload's controller would make it.
type podTemplate struct {
	workload string // Kind/name
	pod      *unstructured.Unstructured
}

// templatePaths says where each workload kind keeps its pod template.
var templatePaths = map[schema.GroupKind][]string{
	{Group: "apps", Kind: "Deployment"}:                   {"spec", "template"},
	{Group: "apps", Kind: "StatefulSet"}:                  {"spec", "template"},
	{Group: "apps", Kind: "DaemonSet"}:                    {"spec", "template"},
	{Group: "apps", Kind: "ReplicaSet"}:                   {"spec", "template"},
	{Group: "batch", Kind: "Job"}:                         {"spec", "template"},
	{Group: "batch", Kind: "CronJob"}:                     {"spec", "jobTemplate", "spec", "template"},
	{Group: "serving.knative.dev", Kind: "Service"}:       {"spec", "template"},
	{Group: "serving.knative.dev", Kind: "Revision"}:      {"spec"},
	{Group: "serving.knative.dev", Kind: "Configuration"}: {"spec", "template"},
}

// notSecured are kinds holding containers that run elsewhere than dwp-system and are not
// held to the restricted standard: the Task Runners run in the apps' namespaces, CD steps
// as suspend nodes (no pod), and CI's kaniko step builds an image as root.
var notSecured = map[schema.GroupKind]string{
	{Group: "argoproj.io", Kind: "ClusterWorkflowTemplate"}: "Task Runners run in the apps' namespaces; kaniko builds as root",
	{Group: "argoproj.io", Kind: "WorkflowTemplate"}:        "Task Runners run in the apps' namespaces; kaniko builds as root",
}

// podTemplates finds every pod template in objs and makes the Pod it stands for. An object
// of another kind that holds containers fails the test, so a new kind of workload cannot
// slip past the check.
func podTemplates(t *testing.T, objs []*unstructured.Unstructured) []podTemplate {
	t.Helper()
	var out []podTemplate
	for _, u := range objs {
		gk := u.GroupVersionKind().GroupKind()
		workload := u.GetKind() + "/" + u.GetName()
		path, ok := templatePaths[gk]
		if !ok {
			if _, skip := notSecured[gk]; !skip && holdsContainers(u.Object) {
				t.Errorf("%s holds containers, but this test knows no pod template in a %s", workload, gk)
			}
			continue
		}
		tmpl, found, err := unstructured.NestedMap(u.Object, path...)
		if err != nil || !found {
			t.Errorf("%s has no pod template at %s: %v", workload, strings.Join(path, "."), err)
			continue
		}
		spec, _, _ := unstructured.NestedMap(tmpl, "spec")
		meta, _, _ := unstructured.NestedMap(tmpl, "metadata")
		podLabels, _, _ := unstructured.NestedStringMap(meta, "labels")
		if podLabels == nil {
			podLabels = map[string]string{}
		}
		if gk.Group == "serving.knative.dev" {
			spec = knativePodSpec(t, spec)
			// Knative labels its revisions' pods with their Service (NetworkPolicies select by it).
			podLabels["serving.knative.dev/service"] = u.GetName()
		}
		pod := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1",
			"kind":       "Pod",
			"metadata": map[string]any{
				"name":   strings.ToLower(u.GetKind() + "-" + u.GetName()),
				"labels": toAny(podLabels),
			},
			"spec": spec,
		}}
		out = append(out, podTemplate{workload: workload, pod: pod})
	}
	return out
}

// knativePodSpec is the pod Knative makes of a revision template's spec, as far as Pod
// Security admission is concerned: without the revision's own fields, and with probes on
// the serving port, which Knative fills in (a user container's probes name none). Knative's
// queue-proxy, which it adds, sets the restricted securityContext itself.
func knativePodSpec(t *testing.T, spec map[string]any) map[string]any {
	t.Helper()
	// Knative refuses a pod-level securityContext unless the cluster enables
	// kubernetes.podspec-securitycontext: what the standard asks goes on each container.
	if _, set := spec["securityContext"]; set {
		t.Errorf("a Knative pod template sets spec.securityContext, which Knative refuses by default")
	}
	spec = deepCopy(spec)
	for _, f := range []string{"containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds"} {
		delete(spec, f)
	}
	containers, _, _ := unstructured.NestedSlice(spec, "containers")
	for i, c := range containers {
		cm := c.(map[string]any)
		port := int64(8080) // Knative's default serving port
		if ports, _, _ := unstructured.NestedSlice(cm, "ports"); len(ports) > 0 {
			if p, ok, _ := unstructured.NestedInt64(ports[0].(map[string]any), "containerPort"); ok {
				port = p
			}
		}
		for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
			for _, handler := range []string{"httpGet", "tcpSocket", "grpc"} {
				if h, ok, _ := unstructured.NestedMap(cm, probe, handler); ok {
					if _, has := h["port"]; !has {
						h["port"] = port
						_ = unstructured.SetNestedMap(cm, h, probe, handler)
					}
				}
			}
		}
		containers[i] = cm
	}
	_ = unstructured.SetNestedSlice(spec, containers, "containers")
	return spec
}

func holdsContainers(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "containers" || k == "initContainers" || holdsContainers(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if holdsContainers(e) {
				return true
			}
		}
	}
	return false
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func deepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

// restrictedNamespace makes the test's namespace enforce the restricted Pod Security
// Standard, and creates there the ServiceAccounts that the pods name (the ServiceAccount
// admission plugin refuses a pod whose account does not exist).
func restrictedNamespace(t *testing.T, env *clustertest.Env, accounts []string) string {
	t.Helper()
	cs := env.AdminClientset(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	got, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels == nil {
		got.Labels = map[string]string{}
	}
	got.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	got.Labels["pod-security.kubernetes.io/enforce-version"] = "latest"
	if _, err := cs.CoreV1().Namespaces().Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, sa := range accounts {
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	return ns
}

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func dryRunPod(dyn dynamic.Interface, ns string, pod *unstructured.Unstructured) error {
	_, err := dyn.Resource(podsResource).Namespace(ns).Create(context.Background(), pod,
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	return err
}

func serviceAccounts(tmpls []podTemplate) []string {
	set := map[string]bool{}
	for _, p := range tmpls {
		if sa, _, _ := unstructured.NestedString(p.pod.Object, "spec", "serviceAccountName"); sa != "" {
			set[sa] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// The workloads every overlay runs; each must be found and admitted.
var wantWorkloads = []string{"Deployment/dwp-redis", "Deployment/dwp-sse-router", "Deployment/dwp-watcher", "Service/dwp-function"}

// Every pod of every overlay, made from its workload's template as its controller would,
// is admitted by the API server's PodSecurity plugin in a namespace enforcing the
// restricted standard (server-side dry run), and has what running it safely needs besides:
// resources, probes on the paths its binary serves, and a NetworkPolicy of its own.
func TestOverlayPodsMeetRestrictedPodSecurity(t *testing.T) {
	env := clustertest.Get(t)
	root := repoRoot(t)
	kubectl := kubectlPath(t, root)
	dyn := env.AdminDynamic(t)
	for _, overlay := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := build(t, kubectl, root, filepath.Join(root, overlay))
			tmpls := podTemplates(t, objs)
			var names []string
			for _, p := range tmpls {
				names = append(names, p.workload)
			}
			slices.Sort(names)
			if !slices.Equal(names, wantWorkloads) {
				t.Fatalf("pod templates of %v, want %v", names, wantWorkloads)
			}
			policies := networkPolicies(t, objs)
			ns := restrictedNamespace(t, env, serviceAccounts(tmpls))
			for _, p := range tmpls {
				t.Run(p.workload, func(t *testing.T) {
					if err := dryRunPod(dyn, ns, p.pod); err != nil {
						t.Errorf("refused under the restricted Pod Security Standard: %v", err)
					}
					checkContainers(t, p)
					podLabels := labels.Set(p.pod.GetLabels())
					var own []string
					for name, sel := range policies {
						if !sel.Empty() && sel.Matches(podLabels) {
							own = append(own, name)
						}
					}
					if len(own) == 0 {
						t.Errorf("no NetworkPolicy selects its pods (labels %v) but the default deny", podLabels)
					}
				})
			}
		})
	}
}

// networkPolicies maps each NetworkPolicy of objs to its pod selector.
func networkPolicies(t *testing.T, objs []*unstructured.Unstructured) map[string]labels.Selector {
	t.Helper()
	out := map[string]labels.Selector{}
	for _, u := range objs {
		if u.GetKind() != "NetworkPolicy" {
			continue
		}
		m, _, _ := unstructured.NestedMap(u.Object, "spec", "podSelector")
		var ls metav1.LabelSelector
		if err := fromUnstructured(m, &ls); err != nil {
			t.Fatalf("NetworkPolicy %s: %v", u.GetName(), err)
		}
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", u.GetName(), err)
		}
		out[u.GetName()] = sel
	}
	if len(out) == 0 {
		t.Fatal("no NetworkPolicy")
	}
	return out
}

// The paths each service's binary serves its probes on (internal/runner for the function,
// watcher/internal/service and sse-router/server for the others).
var probePaths = map[string]map[string]string{
	"Service/dwp-function":      {"readinessProbe": runner.ReadinessPath, "livenessProbe": runner.LivenessPath},
	"Deployment/dwp-watcher":    {"readinessProbe": "/readyz", "livenessProbe": "/healthz"},
	"Deployment/dwp-sse-router": {"readinessProbe": "/readyz", "livenessProbe": "/healthz"},
}

// checkContainers: every container asks for CPU and memory, is limited in memory, and has
// a liveness and a readiness probe, on the service's own paths where it is one of ours.
func checkContainers(t *testing.T, p podTemplate) {
	t.Helper()
	var spec corev1.PodSpec
	m, _, _ := unstructured.NestedMap(p.pod.Object, "spec")
	if err := fromUnstructured(m, &spec); err != nil {
		t.Fatal(err)
	}
	for _, c := range spec.Containers {
		req, lim := c.Resources.Requests, c.Resources.Limits
		if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
			t.Errorf("container %s: requests %v, limits %v; want CPU and memory requests and a memory limit", c.Name, req, lim)
		}
		probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe}
		for kind, probe := range probes {
			if probe == nil {
				t.Errorf("container %s has no %s", c.Name, kind)
				continue
			}
			want, ours := probePaths[p.workload][kind]
			if !ours {
				continue
			}
			if probe.HTTPGet == nil || probe.HTTPGet.Path != want {
				t.Errorf("container %s: %s %+v, want GET %s", c.Name, kind, probe.ProbeHandler, want)
			}
		}
	}
}

// The admission check can fail: a pod template of the overlay with one of the restricted
// standard's demands undone is refused, by PodSecurity, where the template as it is was
// admitted.
func TestPodSecurityRefusesWhatTheStandardForbids(t *testing.T) {
	env := clustertest.Get(t)
	root := repoRoot(t)
	objs := build(t, kubectlPath(t, root), root, filepath.Join(root, "deploy/overlays/production"))
	var router *unstructured.Unstructured
	for _, p := range podTemplates(t, objs) {
		if p.workload == "Deployment/dwp-sse-router" {
			router = p.pod
		}
	}
	if router == nil {
		t.Fatal("the production overlay has no router Deployment")
	}
	dyn := env.AdminDynamic(t)
	ns := restrictedNamespace(t, env, serviceAccounts([]podTemplate{{pod: router}}))
	if err := dryRunPod(dyn, ns, router); err != nil {
		t.Fatalf("the router's pod as it is was refused: %v", err)
	}
	container := func(pod map[string]any, f func(c map[string]any)) {
		cs, _, _ := unstructured.NestedSlice(pod, "spec", "containers")
		for i := range cs {
			f(cs[i].(map[string]any))
		}
		_ = unstructured.SetNestedSlice(pod, cs, "spec", "containers")
	}
	for _, tc := range []struct {
		name   string
		mutate func(pod map[string]any)
		want   string // the PodSecurity check named in the refusal
	}{
		{"no securityContext anywhere", func(pod map[string]any) {
			unstructured.RemoveNestedField(pod, "spec", "securityContext")
			container(pod, func(c map[string]any) { delete(c, "securityContext") })
		}, "allowPrivilegeEscalation != false"},
		{"privilege escalation allowed", func(pod map[string]any) {
			container(pod, func(c map[string]any) {
				_ = unstructured.SetNestedField(c, true, "securityContext", "allowPrivilegeEscalation")
			})
		}, "allowPrivilegeEscalation != false"},
		{"capabilities kept", func(pod map[string]any) {
			container(pod, func(c map[string]any) { unstructured.RemoveNestedField(c, "securityContext", "capabilities") })
		}, "unrestricted capabilities"},
		{"may run as root", func(pod map[string]any) {
			unstructured.RemoveNestedField(pod, "spec", "securityContext", "runAsNonRoot")
		}, "runAsNonRoot != true"},
		{"runs as root", func(pod map[string]any) {
			container(pod, func(c map[string]any) { _ = unstructured.SetNestedField(c, int64(0), "securityContext", "runAsUser") })
		}, "runAsUser=0"},
		{"no seccomp profile", func(pod map[string]any) {
			unstructured.RemoveNestedField(pod, "spec", "securityContext", "seccompProfile")
		}, "seccompProfile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := router.DeepCopy()
			tc.mutate(pod.Object)
			err := dryRunPod(dyn, ns, pod)
			if err == nil {
				t.Fatal("admitted")
			}
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "violates PodSecurity") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused, but not by PodSecurity for %q: %v", tc.want, err)
			}
		})
	}
}

func fromUnstructured(m map[string]any, into any) error {
	if m == nil {
		return nil
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, into); err != nil {
		return fmt.Errorf("convert: %w", err)
	}
	return nil
}
