package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// What a real cluster's storage and ingress controllers would do, for the plane's own
// StorageClass and IngressClass (both in manifests/50-argocd.yaml, both the default). Without
// them a PVC stays Pending and an Ingress has no address, and Argo CD reports either as
// Progressing for ever.
const (
	storageClassName   = "standard"
	provisionerName    = "sandbox.dwp.io/hostpath"
	ingressClassName   = "sandbox"
	ingressController  = "sandbox.dwp.io/ingress"
	provisionedByAnnot = "pv.kubernetes.io/provisioned-by"
)

// emulators are the launcher's in-process controllers: a volume provisioner and resizer,
// and an ingress status writer.
type emulators struct {
	cs         kubernetes.Interface
	volumesDir string
	logger     *slog.Logger
	pvcs       cacheLister[*corev1.PersistentVolumeClaim]
	pvs        cacheLister[*corev1.PersistentVolume]
	ingresses  cacheLister[*networkingv1.Ingress]
	wg         sync.WaitGroup
}

// cacheLister reads typed objects from an informer's store.
type cacheLister[T any] struct{ store cache.Store }

func (l cacheLister[T]) get(key string) (T, bool) {
	var zero T
	obj, ok, err := l.store.GetByKey(key)
	if err != nil || !ok {
		return zero, false
	}
	t, ok := obj.(T)
	return t, ok
}

// startEmulators starts the controllers; they stop when ctx ends, and wait returns once
// they have.
func startEmulators(ctx context.Context, cs kubernetes.Interface, volumesDir string, logger *slog.Logger) (wait func(), err error) {
	if err := os.MkdirAll(volumesDir, 0o755); err != nil {
		return nil, err
	}
	e := &emulators{cs: cs, volumesDir: volumesDir, logger: logger}
	f := informers.NewSharedInformerFactory(cs, 0)
	pvcInf := f.Core().V1().PersistentVolumeClaims().Informer()
	pvInf := f.Core().V1().PersistentVolumes().Informer()
	ingInf := f.Networking().V1().Ingresses().Informer()
	e.pvcs = cacheLister[*corev1.PersistentVolumeClaim]{pvcInf.GetStore()}
	e.pvs = cacheLister[*corev1.PersistentVolume]{pvInf.GetStore()}
	e.ingresses = cacheLister[*networkingv1.Ingress]{ingInf.GetStore()}

	claims := newLoop(ctx, "volume provisioner", logger, e.syncClaim)
	volumes := newLoop(ctx, "volume reclaimer", logger, e.syncVolume)
	ingresses := newLoop(ctx, "ingress status", logger, e.syncIngress)
	for _, h := range []struct {
		inf  cache.SharedIndexInformer
		loop *loop
	}{{pvcInf, claims}, {pvInf, volumes}, {ingInf, ingresses}} {
		if _, err := h.inf.AddEventHandler(h.loop.handler()); err != nil {
			return nil, err
		}
	}
	// A claim may grow before its volume reaches the cache; the volume's arrival then
	// brings the claim back.
	if _, err := pvInf.AddEventHandler(claims.handlerBy(claimOfVolume)); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	for _, l := range []*loop{claims, volumes, ingresses} {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			// Work only from a full cache, so that no PV is made twice for one claim.
			if !cache.WaitForCacheSync(ctx.Done(), pvcInf.HasSynced, pvInf.HasSynced, ingInf.HasSynced) {
				return
			}
			l.run(ctx)
		}()
	}
	return func() {
		e.wg.Wait()
		f.Shutdown()
	}, nil
}

// loop is a work queue of object keys and the function that brings one key's object to
// where it should be; failures are retried with backoff.
type loop struct {
	name   string
	queue  workqueue.TypedRateLimitingInterface[string]
	sync   func(context.Context, string) error
	logger *slog.Logger
}

func newLoop(ctx context.Context, name string, logger *slog.Logger, sync func(context.Context, string) error) *loop {
	l := &loop{
		name:   name,
		queue:  workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		sync:   sync,
		logger: logger,
	}
	context.AfterFunc(ctx, l.queue.ShutDown)
	return l
}

func (l *loop) handler() cache.ResourceEventHandler {
	return l.handlerBy(func(obj any) (string, bool) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		return key, err == nil
	})
}

// handlerBy queues the key that keyOf finds for an object, if it finds one.
func (l *loop) handlerBy(keyOf func(obj any) (string, bool)) cache.ResourceEventHandler {
	add := func(obj any) {
		if key, ok := keyOf(obj); ok {
			l.queue.Add(key)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: add,
	}
}

func (l *loop) run(ctx context.Context) {
	for {
		key, quit := l.queue.Get()
		if quit {
			return
		}
		if err := l.sync(ctx, key); err != nil && ctx.Err() == nil {
			l.logger.Debug("retrying", "controller", l.name, "key", key, "err", err)
			l.queue.AddRateLimited(key)
		} else {
			l.queue.Forget(key)
		}
		l.queue.Done(key)
	}
}

// syncClaim provisions a volume for a pending claim of the plane's class, and completes
// the expansion of a bound one whose request grew (as an external resizer and the kubelet
// would between them).
func (e *emulators) syncClaim(ctx context.Context, key string) error {
	pvc, ok := e.pvcs.get(key)
	if !ok || pvc.DeletionTimestamp != nil || className(pvc.Spec.StorageClassName) != storageClassName {
		return nil
	}
	switch pvc.Status.Phase {
	case corev1.ClaimPending:
		if pvc.Spec.VolumeName != "" {
			return nil // bound by name to a volume of its own: not ours to make
		}
		return e.provision(ctx, pvc)
	case corev1.ClaimBound:
		return e.expand(ctx, pvc)
	}
	return nil
}

// claimOfVolume is the key of the claim a volume is bound to.
func claimOfVolume(obj any) (string, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.ClaimRef == nil {
		return "", false
	}
	return pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name, true
}

func className(name *string) string {
	if name == nil {
		return ""
	}
	return *name
}

func (e *emulators) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	size, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil
	}
	name := "pvc-" + string(pvc.UID)
	path := filepath.Join(e.volumesDir, name)
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	modes := pvc.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	hostPathType := corev1.HostPathDirectoryOrCreate
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedByAnnot: provisionerName},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: modes,
			VolumeMode:  pvc.Spec.VolumeMode,
			// The PV controller binds a volume whose claimRef names the claim, as it does
			// for any external provisioner's.
			ClaimRef: &corev1.ObjectReference{
				APIVersion: "v1", Kind: "PersistentVolumeClaim",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              storageClassName,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: path, Type: &hostPathType},
			},
		},
	}
	_, err := e.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{FieldManager: "dwp-cluster"})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("provision %s for %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	e.logger.Debug("provisioned", "pv", name, "claim", pvc.Namespace+"/"+pvc.Name, "size", size.String())
	return nil
}

func (e *emulators) expand(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	want, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil
	}
	have := pvc.Status.Capacity[corev1.ResourceStorage]
	if want.Cmp(have) <= 0 {
		return nil
	}
	pv, ok := e.pvs.get(pvc.Spec.VolumeName)
	if !ok || pv.Annotations[provisionedByAnnot] != provisionerName {
		return nil
	}
	if pvCap := pv.Spec.Capacity[corev1.ResourceStorage]; want.Cmp(pvCap) > 0 {
		patch := fmt.Sprintf(`{"spec":{"capacity":{"storage":%q}}}`, want.String())
		if _, err := e.cs.CoreV1().PersistentVolumes().Patch(ctx, pv.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("grow %s: %w", pv.Name, err)
		}
	}
	updated := pvc.DeepCopy()
	setQuantity(&updated.Status.Capacity, want)
	setQuantity(&updated.Status.AllocatedResources, want)
	delete(updated.Status.AllocatedResourceStatuses, corev1.ResourceStorage)
	var kept []corev1.PersistentVolumeClaimCondition
	for _, c := range updated.Status.Conditions {
		if c.Type != corev1.PersistentVolumeClaimResizing && c.Type != corev1.PersistentVolumeClaimFileSystemResizePending {
			kept = append(kept, c)
		}
	}
	updated.Status.Conditions = kept
	if _, err := e.cs.CoreV1().PersistentVolumeClaims(pvc.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("resize %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	e.logger.Debug("resized", "claim", pvc.Namespace+"/"+pvc.Name, "size", want.String())
	return nil
}

func setQuantity(list *corev1.ResourceList, q resource.Quantity) {
	if *list == nil {
		*list = corev1.ResourceList{}
	}
	(*list)[corev1.ResourceStorage] = q
}

// syncVolume deletes a released volume of ours and its folder, as a provisioner does
// for the reclaim policy Delete.
func (e *emulators) syncVolume(ctx context.Context, key string) error {
	pv, ok := e.pvs.get(key)
	if !ok || pv.Annotations[provisionedByAnnot] != provisionerName || pv.DeletionTimestamp != nil {
		return nil
	}
	if pv.Status.Phase != corev1.VolumeReleased || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	if hp := pv.Spec.HostPath; hp != nil && filepath.Dir(hp.Path) == e.volumesDir {
		if err := os.RemoveAll(hp.Path); err != nil {
			return err
		}
	}
	err := e.cs.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &pv.UID},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// loadBalancerIP is the address every Ingress of the plane's class reports: all the
// plane's endpoints are on loopback.
const loadBalancerIP = "127.0.0.1"

// syncIngress gives an Ingress of the plane's class (or of no class) the address a
// real ingress controller would publish.
func (e *emulators) syncIngress(ctx context.Context, key string) error {
	ing, ok := e.ingresses.get(key)
	if !ok || ing.DeletionTimestamp != nil {
		return nil
	}
	if c := className(ing.Spec.IngressClassName); c != ingressClassName && (c != "" || ing.Annotations["kubernetes.io/ingress.class"] != "") {
		return nil
	}
	lb := ing.Status.LoadBalancer.Ingress
	if len(lb) == 1 && lb[0].IP == loadBalancerIP && lb[0].Hostname == "" {
		return nil
	}
	updated := ing.DeepCopy()
	updated.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: loadBalancerIP}}
	_, err := e.cs.NetworkingV1().Ingresses(ing.Namespace).UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingress status %s: %w", key, err)
	}
	return nil
}
