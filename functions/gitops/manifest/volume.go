package manifest

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// maxVolumeSize bounds a volume's size: more is a typo rather than a plan.
var maxVolumeSize = resource.MustParse("16Ti")

type volume struct {
	target       Target
	name         string
	size         resource.Quantity
	accessMode   corev1.PersistentVolumeAccessMode
	storageClass *string
}

func parseVolume(t Target, r *reader) *volume {
	v := &volume{
		target:     t,
		name:       r.dnsLabel("name", validation.DNS1123LabelMaxLength),
		accessMode: corev1.PersistentVolumeAccessMode(r.get("access-mode")),
	}
	if size, ok := r.quantity("size"); ok {
		if size.Cmp(maxVolumeSize) > 0 {
			r.fail("size", "must be at most "+maxVolumeSize.String())
		}
		v.size = size
	}
	if sc := r.dnsSubdomain("storage-class"); sc != "" {
		v.storageClass = &sc
	}
	return v
}

func (v *volume) file() string { return "pvc-" + v.name + ".yaml" }

func (v *volume) Kind() Kind { return KindVolume }

func (v *volume) Owns(file string) bool { return file == v.file() }

func (v *volume) Summary() string {
	s := fmt.Sprintf("volume %s: %s %s", v.name, v.size.String(), v.accessMode)
	if v.storageClass != nil {
		s += ", storage class " + *v.storageClass
	}
	return s
}

func (v *volume) Files() (map[string][]byte, error) {
	t := v.target
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: v.name, Namespace: t.Namespace, Labels: t.labels()},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{v.accessMode},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: v.size}},
			StorageClassName: v.storageClass,
		},
	}
	b, err := encode(pvc)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{v.file(): b}, nil
}
