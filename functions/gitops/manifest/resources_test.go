package manifest_test

import (
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
)

func TestResources(t *testing.T) {
	tests := []struct {
		kind   manifest.Kind
		params map[string]string
		want   string
	}{
		{manifest.KindAppService, map[string]string{"image": "r/x:1"}, "apps/deployments /services"},
		{manifest.KindAppService, map[string]string{"image": "r/x:1", "ingress-host": "x.example", "hpa-max": "3", "cpu-request": "1"},
			"apps/deployments autoscaling/horizontalpodautoscalers networking.k8s.io/ingresses /services"},
		{manifest.KindVolume, map[string]string{"name": "d", "size": "1Gi"}, "/persistentvolumeclaims"},
		{manifest.KindCronJob, map[string]string{"name": "n", "image": "r/x:1", "schedule": "@daily"}, "batch/cronjobs"},
		{manifest.KindProject, map[string]string{"editors": "user:bob"}, "rbac.authorization.k8s.io/rolebindings /namespaces /serviceaccounts"},
		{manifest.KindHelm, map[string]string{"chart": "c", "repo": "https://x.example", "version": "1.0.0"},
			"apps/deployments apps/statefulsets /services /configmaps /secrets /serviceaccounts"},
	}
	for _, tt := range tests {
		s, errs := manifest.Parse(tt.kind, manifest.Target{Namespace: "demo", App: "shop"}, tt.params)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", tt.kind, errs)
		}
		rs, err := manifest.Resources(s)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rs {
			got = append(got, r.Group+"/"+r.Resource)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s: %v, want %s", tt.kind, got, tt.want)
		}
	}
}
