package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// The API server's own controllers do not run here: the test plays the PV controller's
// part (binding) itself.
func TestProvisionerBindsGrowsAndReclaims(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	volumes := filepath.Join(t.TempDir(), "volumes")
	wait, err := startEmulators(ctx, cs, volumes, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()

	class := storageClassName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data", UID: "u1"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	other := pvc.DeepCopy()
	other.Name, other.UID, other.Spec.StorageClassName = "elsewhere", "u2", ptrTo("other")
	for _, c := range []*corev1.PersistentVolumeClaim{pvc, other} {
		if _, err := cs.CoreV1().PersistentVolumeClaims("ns").Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var pv *corev1.PersistentVolume
	eventually(t, "a PV for the claim", func() error {
		pv, err = cs.CoreV1().PersistentVolumes().Get(ctx, "pvc-u1", metav1.GetOptions{})
		return err
	})
	if ref := pv.Spec.ClaimRef; ref == nil || ref.Name != "data" || ref.Namespace != "ns" || ref.UID != "u1" {
		t.Fatalf("claimRef %+v", pv.Spec.ClaimRef)
	}
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.String() != "1Gi" {
		t.Fatalf("capacity %s", got.String())
	}
	if hp := pv.Spec.HostPath; hp == nil || filepath.Dir(hp.Path) != volumes {
		t.Fatalf("hostPath %+v, want a folder of %s", pv.Spec.HostPath, volumes)
	}
	if _, err := os.Stat(pv.Spec.HostPath.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, "pvc-u2", metav1.GetOptions{}); err == nil {
		t.Fatal("a claim of another class was provisioned")
	}

	// Bound, as the PV controller would, then asked for more.
	bound, _ := cs.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data", metav1.GetOptions{})
	bound.Spec.VolumeName = pv.Name
	bound.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("3Gi")
	bound.Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}
	if _, err := cs.CoreV1().PersistentVolumeClaims("ns").Update(ctx, bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the claim's capacity grows", func() error {
		got, err := cs.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c := got.Status.Capacity[corev1.ResourceStorage]; c.String() != "3Gi" {
			return fmt.Errorf("capacity %s", c.String())
		}
		return nil
	})
	grown, _ := cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
	if c := grown.Spec.Capacity[corev1.ResourceStorage]; c.String() != "3Gi" {
		t.Fatalf("PV capacity %s after the resize", c.String())
	}

	grown.Status.Phase = corev1.VolumeReleased
	if _, err := cs.CoreV1().PersistentVolumes().UpdateStatus(ctx, grown, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the released PV and its folder are deleted", func() error {
		if _, err := cs.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err == nil {
			return fmt.Errorf("PV %s still there", pv.Name)
		}
		if _, err := os.Stat(pv.Spec.HostPath.Path); err == nil {
			return fmt.Errorf("%s still there", pv.Spec.HostPath.Path)
		}
		return nil
	})
}

// A claim can grow before the emulators' cache holds its volume (the claim's event comes
// first); the volume's arrival must still complete the expansion.
func TestProvisionerGrowsAClaimWhoseVolumeArrivesLater(t *testing.T) {
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := startEmulators(ctx, cs, filepath.Join(t.TempDir(), "volumes"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()

	class := storageClassName
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data", UID: "u1"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			VolumeName:       "pvc-u1",
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}
	if _, err := cs.CoreV1().PersistentVolumeClaims("ns").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Long enough for the claim's event to be handled while no volume is known.
	time.Sleep(300 * time.Millisecond)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-u1", Annotations: map[string]string{provisionedByAnnot: provisionerName}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			ClaimRef:         &corev1.ObjectReference{Namespace: "ns", Name: "data", UID: "u1"},
			StorageClassName: storageClassName,
		},
	}
	if _, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the claim's capacity grows", func() error {
		got, err := cs.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c := got.Status.Capacity[corev1.ResourceStorage]; c.String() != "2Gi" {
			return fmt.Errorf("capacity %s", c.String())
		}
		return nil
	})
}

func TestIngressStatusForThePlanesClassOnly(t *testing.T) {
	cases := []struct {
		name       string
		class      *string
		annotation string
		want       bool
	}{
		{"the plane's class", ptrTo(ingressClassName), "", true},
		{"no class (made before the default class existed)", nil, "", true},
		{"another class", ptrTo("nginx"), "", false},
		{"another class by the old annotation", nil, "nginx", false},
	}
	cs := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	wait, err := startEmulators(ctx, cs, filepath.Join(t.TempDir(), "volumes"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()
	for i, tc := range cases {
		ing := &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("ing-%d", i)},
			Spec:       networkingv1.IngressSpec{IngressClassName: tc.class},
		}
		if tc.annotation != "" {
			ing.Annotations = map[string]string{"kubernetes.io/ingress.class": tc.annotation}
		}
		if _, err := cs.NetworkingV1().Ingresses("ns").Create(ctx, ing, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "addresses published", func() error {
		for i, tc := range cases {
			ing, err := cs.NetworkingV1().Ingresses("ns").Get(ctx, fmt.Sprintf("ing-%d", i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			lb := ing.Status.LoadBalancer.Ingress
			if tc.want && (len(lb) != 1 || lb[0].IP != loadBalancerIP) {
				return fmt.Errorf("%s: load balancer %+v", tc.name, lb)
			}
		}
		return nil
	})
	// An absence cannot be awaited: give the controller a moment to err.
	time.Sleep(200 * time.Millisecond)
	for i, tc := range cases {
		ing, _ := cs.NetworkingV1().Ingresses("ns").Get(ctx, fmt.Sprintf("ing-%d", i), metav1.GetOptions{})
		if got := len(ing.Status.LoadBalancer.Ingress) > 0; got != tc.want {
			t.Errorf("%s: has an address %v, want %v", tc.name, got, tc.want)
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
