package workflows

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/dwp-sre/dwp-sre/functions/workflows/archive"
)

func TestArchivedStepLog(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	argo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+" "+r.URL.Path)
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer alice" && !strings.HasPrefix(r.URL.Path, "/api/") {
			http.Error(w, "Unauthorized", http.StatusUnauthorized) // argo-server refusing an artifact
			return
		}
		switch r.URL.Path {
		case "/api/v1/archived-workflows/u-1":
			_, _ = w.Write([]byte(`{"metadata":{"name":"build","namespace":"team","uid":"u-1"},"status":{"nodes":{
				"build-1":{"id":"build-1","outputs":{"artifacts":[{"name":"main-logs","s3":{"key":"build/build-1/main.log"}}]}},
				"build-2":{"id":"build-2"}}}}`))
		case "/api/v1/archived-workflows/u-gone":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"code":5,"message":"not found"}`))
		case "/artifact-files/team/archived-workflows/u-1/build-1/outputs/main-logs":
			w.Header().Set("Content-Type", "text/x-log")
			_, _ = w.Write([]byte("+ make build\nok\n"))
		default:
			http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		}
	}))
	defer argo.Close()
	base, _ := url.Parse(argo.URL)
	fc := newFakeCluster(t, map[string][]string{"alice": {"team"}})
	h := newRouter(newTestFamily(fc, archiveArgoServer(base, argo.Client())))

	r := do(t, h, http.MethodGet, "/api/v1/namespaces/team/archived-workflows/u-1/nodes/build-1/log", "alice", "")
	if r.code != http.StatusOK || r.body != "+ make build\nok\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("%d %v %q", r.code, r.header, r.body)
	}
	mu.Lock()
	if want := "Bearer alice /artifact-files/team/archived-workflows/u-1/build-1/outputs/main-logs"; len(seen) != 2 || seen[1] != want {
		t.Fatalf("argo-server saw %q", seen)
	}
	mu.Unlock()
	for _, c := range []struct {
		path, user string
		code       int
		detail     string
	}{
		{"team/archived-workflows/u-1/nodes/build-9/log", "alice", 404, "no node build-9"},
		{"team/archived-workflows/u-1/nodes/build-2/log", "alice", 404, "archived no log"},
		{"other/archived-workflows/u-1/nodes/build-1/log", "alice", 404, "in namespace other"},
		{"team/archived-workflows/u-gone/nodes/build-1/log", "alice", 404, "not found"},
		{"team/archived-workflows/u-1/nodes/build-1/log", "bob", 403, "refused"},
		{"team/archived-workflows/u-1/nodes/build-1/log?follow=true", "alice", 400, "query"},
		{"Team/archived-workflows/u-1/nodes/build-1/log", "alice", 400, "namespace"},
		{"team/archived-workflows/u_1/nodes/build-1/log", "alice", 400, "uid"},
		{"team/archived-workflows/u-1/nodes/a%20b/log", "alice", 400, "node"},
	} {
		r := do(t, h, http.MethodGet, "/api/v1/namespaces/"+c.path, c.user, "")
		if r.code != c.code || !strings.Contains(r.body, c.detail) {
			t.Errorf("%s as %s: %d %s", c.path, c.user, r.code, r.body)
		}
	}

	// Postgres holds workflows, not logs; no archive at all is the archive's own 501.
	for _, arch := range []struct {
		name   string
		family *Family
		detail string
	}{
		{"postgres", newTestFamily(fc, &fakeArchive{}), "not their logs"},
		{"none", newTestFamily(fc, nil), "no workflow archive is configured"},
	} {
		r := do(t, newRouter(arch.family), http.MethodGet, "/api/v1/namespaces/team/archived-workflows/u-1/nodes/build-1/log", "alice", "")
		if r.code != http.StatusNotImplemented || !strings.Contains(r.body, arch.detail) {
			t.Errorf("%s: %d %s", arch.name, r.code, r.body)
		}
	}
}

func FuzzParseStepLogPath(f *testing.F) {
	f.Add("team", "u-1", "build-1")
	f.Add("team", "u-1", "..")
	f.Add("a_b", "u/1", "n%2F")
	f.Fuzz(func(t *testing.T, ns, uid, node string) {
		p, err := parseStepLogPath(ns, uid, node)
		if err != nil {
			return
		}
		// Whatever is accepted goes into argo-server's path as one plain segment each.
		for _, v := range []string{p.namespace, p.uid, p.node} {
			if v == "" || v == "." || v == ".." || url.PathEscape(v) != v || strings.ContainsAny(v, "/%?#") {
				t.Fatalf("accepted %q", v)
			}
		}
		if p.namespace != ns || p.uid != uid || p.node != node {
			t.Fatalf("changed %q %q %q into %+v", ns, uid, node, p)
		}
	})
}

func archiveArgoServer(base *url.URL, c *http.Client) *archive.ArgoServer {
	return archive.NewArgoServerWithClient(base, c)
}
