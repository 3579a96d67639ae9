// Package deploy_test checks that every kustomization of the project (deploy/ and
// triggers/) builds and that each object it makes is accepted by a real API server with
// the CRDs installed (server-side dry run, strict field validation), and that every pod
// the overlays would run is admitted under the restricted Pod Security Standard.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// kustomizations lists every folder under the given top folders of root holding a
// kustomization.yaml of kind Kustomization. A Component (such as the production overlay's
// images) makes nothing alone: it is built as part of the overlays naming it.
func kustomizations(t *testing.T, root string, tops ...string) []string {
	var dirs []string
	for _, top := range tops {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d os.DirEntry, err error) error {
			if errors.Is(err, os.ErrNotExist) {
				return filepath.SkipDir
			}
			if err != nil {
				return err
			}
			if d.IsDir() || d.Name() != "kustomization.yaml" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var k struct{ Kind string }
			if err := yaml.Unmarshal(b, &k); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if k.Kind != "Component" {
				dirs = append(dirs, filepath.Dir(p))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// The overlays an install is made of; a test fails if one is renamed without it.
var overlays = []string{"deploy/overlays/local", "deploy/overlays/production"}

// kubectlPath is the plane's kubectl, which builds kustomizations as `kubectl apply -k` does.
func kubectlPath(t *testing.T, root string) string {
	t.Helper()
	kubectl := filepath.Join(root, "bin", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s is built with the control plane (make build): %v", kubectl, err)
	}
	return kubectl
}

// build runs kustomize on dir and decodes the objects it makes.
func build(t *testing.T, kubectl, root, dir string) []*unstructured.Unstructured {
	t.Helper()
	rel, _ := filepath.Rel(root, dir)
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kustomize %s: %v\n%s", rel, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	objs := decode(t, out)
	if len(objs) == 0 {
		t.Fatalf("%s makes no objects", rel)
	}
	return objs
}

func TestKustomizationsAreAcceptedByTheAPIServer(t *testing.T) {
	env := clustertest.Get(t)
	root := repoRoot(t)
	kubectl := kubectlPath(t, root)
	dirs := kustomizations(t, root, "deploy", "triggers")
	for _, o := range overlays {
		if !slices.Contains(dirs, filepath.Join(root, o)) {
			t.Errorf("no kustomization in %s", o)
		}
	}
	cs := env.AdminClientset(t)
	dyn := env.AdminDynamic(t)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(env.Admin)))
	top := t
	for _, dir := range dirs {
		rel, _ := filepath.Rel(root, dir)
		t.Run(rel, func(t *testing.T) {
			objs := build(t, kubectl, root, dir)
			ctx := context.Background()
			for _, u := range objs {
				m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
				if err != nil {
					t.Errorf("%s %s: %v", u.GetKind(), u.GetName(), err)
					continue
				}
				ri := dyn.Resource(m.Resource)
				var create func() error
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					ns := u.GetNamespace()
					if ns == "" {
						ns = "default"
					}
					ensureNamespace(t, top, cs, ns)
					create = func() error {
						_, err := ri.Namespace(ns).Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
						return err
					}
				} else {
					create = func() error {
						_, err := ri.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
						return err
					}
				}
				if err := create(); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Errorf("%s %s/%s refused: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
				}
			}
		})
	}
}

// ensureNamespace creates a namespace the manifests name, for real, and removes it when
// the top-level test ends (so that every kustomization naming it finds it) unless it
// existed before. A namespace still terminating, from an earlier run, is waited out.
func ensureNamespace(t, top *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err == nil {
			top.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) })
			return
		}
		if !apierrors.IsAlreadyExists(err) {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		got, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if err == nil && got.DeletionTimestamp == nil {
			return
		}
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("namespace %s is still terminating", ns)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func decode(t *testing.T, b []byte) []*unstructured.Unstructured {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o map[string]any
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(o) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: o})
		}
	}
}
