package manifest_test

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
)

// FuzzParse feeds any kind and any parameters (one name=value a line) to Parse: it must
// not panic, and a spec it accepts must render files that decode into the API's types.
func FuzzParse(f *testing.F) {
	f.Add("app-service", "shop", "image=registry.example/shop:1.2.3\nreplicas=2\ningress-host=shop.example.com\nhpa-max=4\ncpu-request=100m")
	f.Add("app-service", "shop", "image=UPPER/Case:tag\nreplicas=-1\ncpu-request=2\ncpu-limit=1")
	f.Add("job", "shop", "name=migrate\nimage=shop:1\nargs=[\"a\",\"b\"]\nbackoff-limit=2\nactive-deadline-seconds=60")
	f.Add("cronjob", "shop", "name=nightly\nimage=shop:1\nschedule=0 3 * * *\ntime-zone=Europe/London\nsuspend=true")
	f.Add("cronjob", "shop", "name=nightly\nimage=shop:1\nschedule=61 * * * *\nconcurrency-policy=Allow")
	f.Add("cronjob", "shop", "name=n\nimage=shop\nschedule=TZ=0")
	f.Add("volume", "shop", "name=data\nsize=10Gi\naccess-mode=ReadWriteMany\nstorage-class=fast")
	f.Add("project", "shop", "admins=user:alice,group:ops\nviewers=user:bob\nkind=project\ntimeout=1h")
	f.Add("daemonset", "", "x=y")

	f.Fuzz(func(t *testing.T, kind, app, lines string) {
		params := map[string]string{}
		for line := range strings.SplitSeq(lines, "\n") {
			name, value, _ := strings.Cut(line, "=")
			params[name] = value
		}
		s, errs := manifest.Parse(manifest.Kind(kind), manifest.Target{Namespace: "ns", App: app}, params)
		if errs != nil {
			if s != nil {
				t.Fatalf("a spec and errors: %v", errs)
			}
			return
		}
		if s.Kind() != manifest.Kind(kind) {
			t.Fatalf("Kind() = %s, want %s", s.Kind(), kind)
		}
		if sum := s.Summary(); sum == "" || strings.ContainsAny(sum, "\r\n") {
			t.Fatalf("Summary %q is not one line", sum)
		}
		files, err := s.Files()
		if err != nil {
			t.Fatalf("Files: %v", err)
		}
		for name, b := range files {
			if !s.Owns(name) {
				t.Errorf("renders %s but does not own it", name)
			}
			for _, doc := range documents(t, b) {
				var head struct{ Kind string }
				if err := yaml.Unmarshal(doc, &head); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				obj, ok := typed[head.Kind]
				if !ok {
					t.Fatalf("%s: unexpected kind %q", name, head.Kind)
				}
				if err := yaml.UnmarshalStrict(doc, obj()); err != nil {
					t.Fatalf("%s: %v\n%s", name, err, doc)
				}
			}
		}
	})
}

// typed makes an object of each kind the package renders.
var typed = map[string]func() any{
	"Deployment":              func() any { return &appsv1.Deployment{} },
	"Service":                 func() any { return &corev1.Service{} },
	"Ingress":                 func() any { return &networkingv1.Ingress{} },
	"HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"Job":                     func() any { return &batchv1.Job{} },
	"CronJob":                 func() any { return &batchv1.CronJob{} },
	"PersistentVolumeClaim":   func() any { return &corev1.PersistentVolumeClaim{} },
	"Namespace":               func() any { return &corev1.Namespace{} },
	"ServiceAccount":          func() any { return &corev1.ServiceAccount{} },
	"RoleBinding":             func() any { return &rbacv1.RoleBinding{} },
}
