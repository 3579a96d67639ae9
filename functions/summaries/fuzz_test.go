package summaries

import (
	"net/url"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParseNamespaces: any query either fails or yields sorted, distinct, valid
// namespaces, at least one and at most MaxNamespaces.
func FuzzParseNamespaces(f *testing.F) {
	for _, s := range []string{"namespace=a", "namespace=a,b&namespace=c", "namespace=", "x=1", "namespace=%2C%2C",
		"namespace=a&namespace=a", "namespace=-a", "namespace=a;b", "%zz", "namespace=\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		nss, err := ParseNamespaces(q)
		if err != nil {
			return
		}
		if len(nss) == 0 || len(nss) > MaxNamespaces || !slices.IsSorted(nss) || len(slices.Compact(slices.Clone(nss))) != len(nss) {
			t.Fatalf("%q → %v", raw, nss)
		}
		for _, ns := range nss {
			if len(validation.IsDNS1123Label(ns)) > 0 {
				t.Fatalf("%q → invalid namespace %q", raw, ns)
			}
		}
	})
}
