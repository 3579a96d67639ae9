package controlplane

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// applier server-side-applies unstructured objects, finding resources by discovery.
type applier struct {
	logger *slog.Logger
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(cfg *rest.Config, logger *slog.Logger) (*applier, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &applier{logger: logger, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

func (a *applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		return a.dyn.Resource(m.Resource).Namespace(ns), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// apply applies every object, several at a time, retrying each until ctx ends (a kind
// may become known only once its CRD is established).
func (a *applier) apply(ctx context.Context, objs []map[string]any) error {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			began := time.Now()
			defer func() { a.logger.Debug("applied", "kind", u.GetKind(), "name", u.GetName(), "took", time.Since(began)) }()
			err := waitFor(ctx, 200*time.Millisecond, func(ctx context.Context) error {
				ri, err := a.resource(u)
				if err != nil {
					return err
				}
				// Creating is much cheaper than applying for the huge CRDs of a fresh
				// plane; apply only what exists already.
				_, err = ri.Create(ctx, u, metav1.CreateOptions{FieldManager: "dwp-cluster"})
				if !apierrors.IsAlreadyExists(err) {
					return err
				}
				_, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "dwp-cluster", Force: true})
				return err
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (a *applier) waitEstablished(ctx context.Context, objs []map[string]any) error {
	for _, o := range objs {
		name := (&unstructured.Unstructured{Object: o}).GetName()
		err := waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			crd, err := a.dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conds {
				cm, _ := c.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not established", name)
		})
		a.logger.Debug("established", "crd", name, "at", time.Now().Format(time.StampMilli))
		if err != nil {
			return err
		}
	}
	a.mapper.Reset()
	return nil
}

// bootstrap applies the CRDs (skipped when this state folder already has the same set),
// kwok's configuration, the node, Argo's and Argo CD's configuration, the metrics
// APIService, and the plane's StorageClass and IngressClass.
func (cp *ControlPlane) bootstrap(ctx context.Context, ap *applier, phase func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	crds, err := readManifestSet(cp.cfg.BinDir, "crds")
	if err != nil {
		return err
	}
	crdStamp, err := fileStamp(manifestPath(cp.cfg.BinDir, "crds"))
	if err != nil {
		return err
	}
	marker := filepath.Join(cp.cfg.Dir, "crds-applied")
	if old, _ := os.ReadFile(marker); string(old) != crdStamp {
		if err := ap.apply(ctx, crds); err != nil {
			return fmt.Errorf("CRDs: %w", err)
		}
	}
	if err := ap.waitEstablished(ctx, crds); err != nil {
		return err
	}
	if err := os.WriteFile(marker, []byte(crdStamp), 0o644); err != nil {
		return err
	}
	phase("CRDs established")
	kwok, err := readManifestSet(cp.cfg.BinDir, "kwok")
	if err != nil {
		return err
	}
	secretKey, err := argoCDSecretKey(cp.cfg.Dir)
	if err != nil {
		return err
	}
	own, err := readOwnManifests(map[string]string{
		"NODE_NAME":       nodeName,
		"ARGO_NAMESPACE":  argoNamespace,
		"CLUSTER_NAME":    cp.cfg.ClusterName,
		"PG_HOST":         cp.cfg.Postgres.Host,
		"PG_PORT":         strconv.Itoa(cp.cfg.Postgres.Port),
		"PG_USER":         cp.cfg.Postgres.User,
		"PG_PASSWORD":     cp.cfg.Postgres.Password,
		"ARCHIVE_DB":      cp.cfg.Postgres.Database,
		"S3_ENDPOINT":     cp.info.ObjectStoreEndpoint,
		"S3_BUCKET":       cp.info.ArtifactBucket,
		"S3_REGION":       s3Region,
		"ARTIFACT_SECRET": artifactSecret,
		"METRICS_IP":      metricsIP,
		"METRICS_PORT":    strconv.Itoa(cp.cfg.Ports.MetricsServer),

		"ARGOCD_NAMESPACE":   argoCDNamespace,
		"ARGOCD_SECRET_KEY":  secretKey,
		"STORAGE_CLASS":      storageClassName,
		"VOLUME_PROVISIONER": provisionerName,
		"INGRESS_CLASS":      ingressClassName,
		"INGRESS_CONTROLLER": ingressController,
	})
	if err != nil {
		return err
	}
	// Namespaces first: an object whose namespace is missing is retried only after a pause.
	namespaces, rest := splitNamespaces(own)
	if err := ap.apply(ctx, namespaces); err != nil {
		return err
	}
	if err := ap.apply(ctx, append(kwok, rest...)); err != nil {
		return err
	}
	phase("cluster objects applied")
	cs, err := kubernetes.NewForConfig(cp.admin)
	if err != nil {
		return err
	}
	return untaintNode(ctx, cs)
}

func splitNamespaces(objs []map[string]any) (namespaces, rest []map[string]any) {
	for _, o := range objs {
		if o["kind"] == "Namespace" && o["apiVersion"] == "v1" {
			namespaces = append(namespaces, o)
		} else {
			rest = append(rest, o)
		}
	}
	return namespaces, rest
}

// untaintNode removes the not-ready taint that admission puts on new nodes: the
// node-lifecycle controller, which would lift it, does not run here.
func untaintNode(ctx context.Context, cs kubernetes.Interface) error {
	return waitFor(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var kept []corev1.Taint
		for _, t := range node.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				kept = append(kept, t)
			}
		}
		if len(kept) == len(node.Spec.Taints) {
			return nil
		}
		node.Spec.Taints = kept
		_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

// waitReady waits for what "ready" means to a user: a Ready node, the default
// ServiceAccount (so pods can be created), the metrics API available, and every
// component process running.
func (cp *ControlPlane) waitReady(ctx context.Context, cs kubernetes.Interface, timeout time.Duration, phase func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	checks := []struct {
		what  string
		check func(context.Context) error
	}{
		{"node Ready", func(ctx context.Context) error {
			node, err := cs.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
			return errors.New("node not Ready")
		}},
		{"default ServiceAccount", func(ctx context.Context) error {
			_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
			return err
		}},
		{"Argo's rules aggregated into admin, edit and view", func(ctx context.Context) error {
			// The controller-manager aggregates them a moment after start; a user granted
			// edit before that could not touch workflows.
			for _, role := range []string{"admin", "edit", "view"} {
				cr, err := cs.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if !grantsGroup(cr.Rules, "argoproj.io") {
					return fmt.Errorf("ClusterRole %s has no argoproj.io rules yet", role)
				}
			}
			return nil
		}},
		{"metrics.k8s.io available", func(ctx context.Context) error {
			_, err := cs.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
			return err
		}},
		{"components running", func(ctx context.Context) error {
			for _, name := range cp.started() {
				if !cp.procs[name].running() {
					return fmt.Errorf("%s is not running (see %s)", name, cp.procs[name].log)
				}
			}
			return nil
		}},
	}
	for _, c := range checks {
		if err := waitFor(ctx, 50*time.Millisecond, c.check); err != nil {
			return fmt.Errorf("waiting for %s: %w", c.what, err)
		}
		phase(c.what)
	}
	return nil
}

func grantsGroup(rules []rbacv1.PolicyRule, group string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) {
			return true
		}
	}
	return false
}

func fileStamp(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// patchJSON is a small merge-patch helper for bootstrap objects.
func patchJSON(ctx context.Context, ri dynamic.ResourceInterface, name string, patch []byte) error {
	_, err := ri.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
