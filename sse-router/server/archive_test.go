package server

import (
	"net/url"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestParseArchivedLogRequest(t *testing.T) {
	for _, c := range []struct {
		ns, uid, node string
		bad           []string
	}{
		{"shop", "0a1b-2c", "build-x7-123", nil},
		{"shop", "0a1b%2D2c", "build-x7-123", nil},
		{"Shop", "u", "n", []string{"namespace"}},
		{"shop", "..", "n", []string{"uid"}},
		{"shop", "u", "a b", []string{"node"}},
		{"", "", "", []string{"namespace", "uid", "node"}},
		{"shop", "u", "%zz", []string{"node"}},
		{"shop", strings.Repeat("u", 254), "n", []string{"uid"}},
	} {
		req, fields := parseArchivedLogRequest(c.ns, c.uid, c.node)
		var got []string
		for _, f := range fields {
			got = append(got, f.Field)
		}
		if strings.Join(got, ",") != strings.Join(c.bad, ",") {
			t.Errorf("%q %q %q: refused %v, want %v", c.ns, c.uid, c.node, got, c.bad)
		}
		if len(c.bad) == 0 && (req.namespace != c.ns || req.uid != "0a1b-2c" && req.uid != c.uid || req.node != c.node) {
			t.Errorf("%q %q %q: parsed %+v", c.ns, c.uid, c.node, req)
		}
	}
}

// FuzzParseArchivedLogRequest: whatever is accepted is safe to put in argo-server's paths
// (escaped, one segment each) and names a real namespace.
func FuzzParseArchivedLogRequest(f *testing.F) {
	f.Add("shop", "0a1b-2c", "build-x7-123")
	f.Add("shop", "..", "%2F")
	f.Add("a.b", "u%00", "n/m")
	f.Fuzz(func(t *testing.T, ns, uid, node string) {
		req, fields := parseArchivedLogRequest(ns, uid, node)
		if len(fields) > 0 {
			return
		}
		if len(validation.IsDNS1123Label(req.namespace)) > 0 {
			t.Fatalf("accepted namespace %q", req.namespace)
		}
		for _, v := range []string{req.uid, req.node} {
			if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/?#%\x00 ") || url.PathEscape(v) != v {
				t.Fatalf("accepted %q", v)
			}
		}
	})
}
