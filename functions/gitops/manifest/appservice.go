package manifest

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The files of an app service.
const (
	DeploymentFile = "deployment.yaml"
	ServiceFile    = "service.yaml"
	IngressFile    = "ingress.yaml"
	HPAFile        = "hpa.yaml"
)

// Names inside an app service's objects.
const (
	containerName = "app"
	portName      = "http"
)

// Bounds of an app service's parameters.
const (
	maxReplicas = 50
	maxPathLen  = 1024
)

type appService struct {
	target    Target
	image     string
	port      int32
	replicas  int32 // unused when hpa is set
	resources corev1.ResourceRequirements
	host      string // no Ingress when empty
	path      string
	hpa       *autoscaling
}

type autoscaling struct {
	min, max, cpuPercent int32
}

func parseAppService(t Target, r *reader) *appService {
	s := &appService{target: t, image: r.image("image"), resources: r.resources()}
	// Read for its validation only: the task function acts on it, the objects do not show it.
	_ = r.get(AutoDeploy)
	port, _ := r.int("port", 1, 65535)
	replicas, _ := r.int("replicas", 0, maxReplicas)
	s.port, s.replicas = int32(port), int32(replicas)

	s.host = r.dnsSubdomain("ingress-host")
	s.path = r.get("ingress-path")
	if detail := checkIngressPath(s.path); s.path != "" && detail != "" {
		r.fail("ingress-path", detail)
	}

	// Read whether or not hpa-max is set: Argo always sends hpa-min and hpa-cpu-target.
	hpaMin, minOK := r.int("hpa-min", 1, maxReplicas)
	hpaMax, maxOK := r.int("hpa-max", 1, maxReplicas)
	cpu, _ := r.int("hpa-cpu-target", 1, 100)
	if maxOK {
		if !minOK {
			hpaMin = 1
		}
		if hpaMin > hpaMax {
			r.fail("hpa-min", fmt.Sprintf("must not be more than hpa-max %d", hpaMax))
		}
		if _, ok := s.resources.Requests[corev1.ResourceCPU]; !ok && !r.failed["cpu-request"] {
			// A CPU utilization target is a percentage of the request.
			r.fail("cpu-request", "required when hpa-max is set")
		}
		s.hpa = &autoscaling{min: int32(hpaMin), max: int32(hpaMax), cpuPercent: int32(cpu)}
	}
	return s
}

// checkIngressPath applies the API server's rules for Prefix paths, and returns what is
// wrong, if anything.
func checkIngressPath(path string) string {
	switch {
	case !strings.HasPrefix(path, "/"):
		return "must begin with /"
	case len(path) > maxPathLen:
		return fmt.Sprintf("must be at most %d characters", maxPathLen)
	case strings.ContainsFunc(path, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return "must not contain spaces or control characters"
	}
	for _, seq := range []string{"//", "/./", "/../", "%2f", "%2F"} {
		if strings.Contains(path, seq) {
			return "must not contain " + seq
		}
	}
	for _, suffix := range []string{"/..", "/."} {
		if strings.HasSuffix(path, suffix) {
			return "must not end with " + suffix
		}
	}
	return ""
}

func (s *appService) Kind() Kind { return KindAppService }

func (s *appService) Owns(file string) bool {
	switch file {
	case DeploymentFile, ServiceFile, IngressFile, HPAFile:
		return true
	}
	return false
}

func (s *appService) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "app-service %s: image %s", s.target.App, s.image)
	if s.hpa != nil {
		fmt.Fprintf(&b, ", %d to %d replicas at %d%% CPU", s.hpa.min, s.hpa.max, s.hpa.cpuPercent)
	} else {
		fmt.Fprintf(&b, ", %d replica%s", s.replicas, plural(int(s.replicas)))
	}
	if s.host != "" {
		fmt.Fprintf(&b, ", ingress %s%s", s.host, s.path)
	}
	return b.String()
}

func (s *appService) Files() (map[string][]byte, error) {
	t := s.target
	meta := metav1.ObjectMeta{Name: t.App, Namespace: t.Namespace, Labels: t.labels()}
	selector := map[string]string{t.AppLabel: t.App}

	deploy := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: t.labels()},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:      containerName,
					Image:     s.image,
					Ports:     []corev1.ContainerPort{{Name: portName, ContainerPort: s.port, Protocol: corev1.ProtocolTCP}},
					Resources: s.resources,
				}}},
			},
		},
	}
	if s.hpa == nil {
		// Under an HPA the count is the HPA's: a count here would fight it on every sync.
		deploy.Spec.Replicas = &s.replicas
	}

	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta,
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: selector,
			// A named target port also keeps the app's job pods, which carry the app label
			// but no such port, out of the service's endpoints.
			Ports: []corev1.ServicePort{{
				Name: portName, Port: s.port, TargetPort: intstr.FromString(portName), Protocol: corev1.ProtocolTCP,
			}},
		},
	}

	files := make(map[string][]byte)
	var err error
	if files[DeploymentFile], err = encode(deploy); err != nil {
		return nil, err
	}
	if files[ServiceFile], err = encode(svc); err != nil {
		return nil, err
	}
	if s.host != "" {
		prefix := networkingv1.PathTypePrefix
		ing := &networkingv1.Ingress{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
			ObjectMeta: meta,
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
				Host: s.host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     s.path,
						PathType: &prefix,
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: t.App,
							Port: networkingv1.ServiceBackendPort{Name: portName},
						}},
					}},
				}},
			}}},
		}
		if files[IngressFile], err = encode(ing); err != nil {
			return nil, err
		}
	}
	if s.hpa != nil {
		hpa := &autoscalingv2.HorizontalPodAutoscaler{
			TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v2", Kind: "HorizontalPodAutoscaler"},
			ObjectMeta: meta,
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: t.App},
				MinReplicas:    &s.hpa.min,
				MaxReplicas:    s.hpa.max,
				Metrics: []autoscalingv2.MetricSpec{{
					Type: autoscalingv2.ResourceMetricSourceType,
					Resource: &autoscalingv2.ResourceMetricSource{
						Name: corev1.ResourceCPU,
						Target: autoscalingv2.MetricTarget{
							Type:               autoscalingv2.UtilizationMetricType,
							AverageUtilization: &s.hpa.cpuPercent,
						},
					},
				}},
			},
		}
		if files[HPAFile], err = encode(hpa); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
