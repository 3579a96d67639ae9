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

// FuzzParseNamespacePage: any query either fails or yields a limit within bounds and a
// continue point that is a valid namespace (or none), which encodes back to the token.
func FuzzParseNamespacePage(f *testing.F) {
	for _, s := range []string{"", "limit=1", "limit=200", "limit=201", "limit=0", "limit=-5", "limit=+3", "limit=0x10",
		"limit=1&limit=1", "continue=" + EncodeContinue("shop"), "continue=" + EncodeContinue("-x"), "continue=bjE6",
		"continue=%zz", "continue=&limit=", "x=1", "continue=" + EncodeContinue("a") + "&limit=9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := ParseNamespacePage(q)
		if err != nil {
			return
		}
		if p.Limit < 1 || p.Limit > MaxNamespaceLimit {
			t.Fatalf("%q → limit %d", raw, p.Limit)
		}
		if _, given := q["limit"]; !given && p.Limit != DefaultNamespaceLimit {
			t.Fatalf("%q → limit %d without one given", raw, p.Limit)
		}
		if p.After == "" {
			if _, given := q["continue"]; given {
				t.Fatalf("%q → a continue token naming no namespace", raw)
			}
			return
		}
		if len(validation.IsDNS1123Label(p.After)) > 0 {
			t.Fatalf("%q → invalid namespace %q", raw, p.After)
		}
		if back, err := ParseNamespacePage(url.Values{"continue": {EncodeContinue(p.After)}}); err != nil || back.After != p.After {
			t.Fatalf("%q → %q does not round-trip: %v %v", raw, p.After, back, err)
		}
	})
}
