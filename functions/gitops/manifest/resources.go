package manifest

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// helmResources stand for what a chart renders, which only Argo CD sees: the kinds charts
// are made of. A user who may write these may install a release.
var helmResources = []schema.GroupResource{
	{Group: "apps", Resource: "deployments"}, {Group: "apps", Resource: "statefulsets"},
	{Resource: "services"}, {Resource: "configmaps"}, {Resource: "secrets"}, {Resource: "serviceaccounts"},
}

// Resources are the API resources of every object s renders (each once), read from its
// own files, so that whoever checks a user's rights checks what is really written; for a
// Helm release, helmResources.
func Resources(s Spec) ([]schema.GroupResource, error) {
	if s.Kind() == KindHelm {
		return slices.Clone(helmResources), nil
	}
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	seen := map[schema.GroupResource]bool{}
	var out []schema.GroupResource
	for _, name := range sortedKeys(files) {
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(files[name]), 4096)
		for {
			var obj struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := dec.Decode(&obj); err != nil {
				break
			}
			if obj.Kind == "" {
				continue
			}
			gv, err := schema.ParseGroupVersion(obj.APIVersion)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			gr := schema.GroupResource{Group: gv.Group, Resource: resourceOf(obj.Kind)}
			if !seen[gr] {
				seen[gr] = true
				out = append(out, gr)
			}
		}
	}
	return out, nil
}

// resourceOf is the resource of a kind this package renders (their plurals are regular
// but for Ingress).
func resourceOf(kind string) string {
	r := strings.ToLower(kind)
	if strings.HasSuffix(r, "s") {
		return r + "es"
	}
	return r + "s"
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
