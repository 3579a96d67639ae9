package summaries

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pageThrough follows continue tokens from the first page and returns every namespace
// listed, with its apps, and the number of pages.
func pageThrough(t *testing.T, fx *fixture, token string, limit int) ([]NamespaceApps, int) {
	t.Helper()
	var all []NamespaceApps
	cont := ""
	for pages := 1; ; pages++ {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		rec, _ := fx.get(t, "/api/v1/namespaces?"+q.Encode(), token)
		if rec.Code != http.StatusOK {
			t.Fatalf("page %d as %s: %d %s", pages, token, rec.Code, rec.Body)
		}
		var l NamespaceList
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Cluster != "c1" || len(l.Items) > limit {
			t.Fatalf("page %d: %+v", pages, l)
		}
		all = append(all, l.Items...)
		if l.Continue == "" {
			return all, pages
		}
		if pages > 100 {
			t.Fatal("the pages never end")
		}
		cont = l.Continue
	}
}

func TestNamespaceList(t *testing.T) {
	fx := newFixture(t, 7, map[string][]string{"alice": {"bank", "shop", "zoo"}, "bob": {"bank"}}, nil)
	fx.api.setNamespaces("a-team", "bank", "default", "shop", "shop2", "zoo")
	fx.post(t, podEvent(t, "shop", "web", "a", 10, true, false))
	fx.post(t, podEvent(t, "shop", "api", "b", 11, true, false))
	fx.post(t, podEvent(t, "bank", "ledger", "c", 12, true, false))
	fx.post(t, podEvent(t, "a-team", "secret", "d", 13, true, false))

	want := []NamespaceApps{{"bank", []string{"ledger"}}, {"shop", []string{"api", "web"}}, {"zoo", []string{}}}
	for _, limit := range []int{1, 2, 3, 50} {
		got, pages := pageThrough(t, fx, "alice", limit)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("alice, limit %d: %v, want %v", limit, got, want)
		}
		if wantPages := (len(want) + limit - 1) / limit; pages != wantPages {
			t.Errorf("alice, limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	if got, _ := pageThrough(t, fx, "bob", 50); fmt.Sprint(got) != fmt.Sprint([]NamespaceApps{{"bank", []string{"ledger"}}}) {
		t.Errorf("bob: %v", got)
	}
	if got, _ := pageThrough(t, fx, "carol", 50); len(got) != 0 {
		t.Errorf("carol, who has no rights: %v", got)
	}

	// The answers are cached: listing again reviews nothing anew.
	n := fx.api.reviews.Load()
	pageThrough(t, fx, "alice", 50)
	if fx.api.reviews.Load() != n {
		t.Errorf("%d reviews asked again", fx.api.reviews.Load()-n)
	}

	// A namespace deleted between pages does not break the next page.
	rec, body := fx.get(t, "/api/v1/namespaces?limit=1", "alice")
	if rec.Code != http.StatusOK || body["continue"] == nil {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	fx.api.setNamespaces("a-team", "default", "shop", "zoo")
	rec, _ = fx.get(t, "/api/v1/namespaces?limit=5&continue="+body["continue"].(string), "alice")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[{"name":"shop","apps":["api","web"]},{"name":"zoo","apps":[]}]`) {
		t.Errorf("after bank's deletion: %d %s", rec.Code, rec.Body)
	}

	for _, tc := range []struct {
		query, token string
		status       int
		detail       string
	}{
		{"", "", 401, "bearer token"},
		{"", "expired", 401, "did not accept"},
		{"?limit=0", "alice", 400, "limit"},
		{"?limit=201", "alice", 400, "1 to 200"},
		{"?limit=x", "alice", 400, "whole number"},
		{"?limit=1&limit=2", "alice", 400, "once"},
		{"?continue=bank", "alice", 400, "continue token"},
		{"?continue=" + EncodeContinue("Bad!"), "alice", 400, "continue token"},
		{"?namespace=shop", "alice", 400, "unknown query parameter"},
	} {
		rec, _ := fx.get(t, "/api/v1/namespaces"+tc.query, tc.token)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.detail) {
			t.Errorf("GET %s as %q: %d %s, want %d with %q", tc.query, tc.token, rec.Code, rec.Body, tc.status, tc.detail)
		}
		if rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: error as %s", tc.query, rec.Header().Get("Content-Type"))
		}
	}
}

// A user who may see one namespace of many gets short pages rather than one request
// reviewing the whole cluster.
func TestNamespaceListBoundsTheReviewsOfAPage(t *testing.T) {
	const n = maxExamined + 100
	fx := newFixture(t, 8, map[string][]string{"alice": {fmt.Sprintf("ns-%04d", n-1)}}, nil)
	var nss []string
	for i := range n {
		nss = append(nss, fmt.Sprintf("ns-%04d", i))
	}
	fx.api.setNamespaces(nss...)
	before := fx.api.reviews.Load()
	rec, body := fx.get(t, "/api/v1/namespaces?limit=10", "alice")
	if rec.Code != http.StatusOK || body["continue"] == nil || len(body["items"].([]any)) != 0 {
		t.Fatalf("first page: %d %s", rec.Code, rec.Body)
	}
	if got := fx.api.reviews.Load() - before; got != maxExamined {
		t.Errorf("the first page reviewed %d namespaces, want %d", got, maxExamined)
	}
	got, _ := pageThrough(t, fx, "alice", 10)
	if len(got) != 1 || got[0].Name != nss[n-1] {
		t.Errorf("alice sees %v", got)
	}
	fx.api.mu.Lock()
	calls := fx.api.listCalls
	fx.api.mu.Unlock()
	if calls < 2 {
		t.Errorf("the namespaces were listed %d times", calls)
	}
}

func TestParseNamespacePage(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  NamespacePage
		err   string
	}{
		{"", NamespacePage{Limit: DefaultNamespaceLimit}, ""},
		{"limit=7", NamespacePage{Limit: 7}, ""},
		{"limit=200&continue=" + EncodeContinue("shop"), NamespacePage{Limit: 200, After: "shop"}, ""},
		{"limit=-1", NamespacePage{}, "limit"},
		{"limit=1e3", NamespacePage{}, "limit"},
		{"continue=", NamespacePage{}, "continue"},
		{"continue=" + EncodeContinue(""), NamespacePage{}, "continue"},
		{"continue=" + url.QueryEscape("bjE6c2hvcA=="), NamespacePage{}, "continue"},
		{"labelSelector=x", NamespacePage{}, "labelSelector"},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := ParseNamespacePage(q)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error about %s", tc.query, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v %v, want %+v", tc.query, got, err, tc.want)
		}
	}
}
