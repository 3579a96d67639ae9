package manifest_test

import (
	"strings"
	"testing"

	"github.com/dwp-sre/dwp-sre/functions/gitops/manifest"
)

func TestHelmParameters(t *testing.T) {
	tests := []struct {
		name   string
		params map[string]string
		field  string // "" when valid
	}{
		{"minimal", valid(manifest.KindHelm), ""},
		{"oci repo", with(manifest.KindHelm, map[string]string{"repo": "oci://registry.example/charts"}), ""},
		{"v-prefixed version", with(manifest.KindHelm, map[string]string{"version": "v2.0.0-rc.1"}), ""},
		{"range, not a version", with(manifest.KindHelm, map[string]string{"version": "^1.2"}), "version"},
		{"latest", with(manifest.KindHelm, map[string]string{"version": "latest"}), "version"},
		{"git repo URL", with(manifest.KindHelm, map[string]string{"repo": "git@github.com:x/y.git"}), "repo"},
		{"credentials in the URL", with(manifest.KindHelm, map[string]string{"repo": "https://u:p@charts.example"}), "repo"},
		{"bad chart", with(manifest.KindHelm, map[string]string{"chart": "../etc"}), "chart"},
		{"long release", with(manifest.KindHelm, map[string]string{"release": strings.Repeat("r", 54)}), "release"},
		{"values not an object", with(manifest.KindHelm, map[string]string{"values": "- a\n- b"}), "values"},
		{"values not YAML", with(manifest.KindHelm, map[string]string{"values": "a: [1"}), "values"},
		{"values too big", with(manifest.KindHelm, map[string]string{"values": "a: " + strings.Repeat("x", 65<<10)}), "values"},
		{"missing repo", map[string]string{"chart": "redis", "version": "1.0.0"}, "repo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := manifest.Parse(manifest.KindHelm, target, tt.params)
			if tt.field == "" {
				if errs != nil {
					t.Fatalf("refused: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tt.field {
				t.Fatalf("errors %v, want one for %s", errs, tt.field)
			}
		})
	}
}

// A release is a generator of the folder's kustomization, the rest are resources.
func TestKustomizationListsReleasesAsGenerators(t *testing.T) {
	k := string(manifest.Kustomization([]string{"service.yaml", "helm-cache.yaml", "deployment.yaml", "kustomization.yaml"}))
	want := "resources:\n- deployment.yaml\n- service.yaml\n"
	if !strings.Contains(k, want) || !strings.Contains(k, "generators:\n- helm-cache.yaml\n") {
		t.Fatalf("kustomization.yaml:\n%s", k)
	}
	if k2 := string(manifest.Kustomization([]string{"deployment.yaml"})); strings.Contains(k2, "generators") {
		t.Fatalf("an empty generators list:\n%s", k2)
	}
}
