package summaries

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func podEvent(t testing.TB, ns, app, uid string, ord events.Ordering, ready, deleted bool) event.Event {
	t.Helper()
	e, err := events.NewPodEvent("c1", deleted, events.Pod{Namespace: ns, App: app, Name: "pod-" + uid, UID: uid,
		Ordering: ord, Phase: "Running", Ready: ready, ChangedAt: t0.Add(time.Duration(ord) * time.Second)}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func workflowEvent(t testing.TB, ns, app, uid string, ord events.Ordering, phase string) event.Event {
	t.Helper()
	e, err := events.NewWorkflowEvent("c1", false, events.Workflow{Namespace: ns, App: app, Name: "build-" + uid, UID: uid,
		Ordering: ord, Phase: phase, Task: "build", CreatedAt: t0}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEventsKeepSummaries(t *testing.T) {
	fx := newFixture(t, 1, map[string][]string{"alice": {"shop", "bank"}}, nil)
	for _, e := range []event.Event{
		podEvent(t, "shop", "web", "a", 10, true, false),
		podEvent(t, "shop", "web", "b", 11, false, false),
		workflowEvent(t, "shop", "web", "w", 12, "Running"),
		podEvent(t, "shop", "api", "c", 13, true, false),
		podEvent(t, "bank", "core", "d", 14, true, false),
	} {
		if rec := fx.post(t, e); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", e.Type(), rec.Code, rec.Body)
		}
	}
	rec, body := fx.get(t, "/api/v1/namespaces/shop/apps/web", "alice")
	if rec.Code != http.StatusOK {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	var sum events.AppSummary
	if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Run.State != events.RunProgressing || sum.Run.Pods != 2 || sum.Run.Ready != 1 || sum.CICD == nil ||
		sum.CICD.Phase != "Running" || sum.CICD.Task != "build" || sum.Revision != "12" || sum.Cluster != "c1" {
		t.Errorf("summary %s", rec.Body)
	}
	_ = body

	rec, _ = fx.get(t, "/api/v1/namespaces/shop/apps", "alice")
	var list AppList
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if rec.Code != http.StatusOK || len(list.Items) != 2 || list.Items[0].App != "api" || list.Items[1].App != "web" {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	rec, _ = fx.get(t, "/api/v1/apps?namespace=shop,bank&namespace=shop", "alice")
	list = AppList{}
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if rec.Code != http.StatusOK || len(list.Items) != 3 || list.Items[0].Namespace != "bank" {
		t.Errorf("list of namespaces: %d %s", rec.Code, rec.Body)
	}

	// The pods and the workflow go: the app is gone.
	for _, e := range []event.Event{
		podEvent(t, "shop", "web", "a", 20, true, true),
		podEvent(t, "shop", "web", "b", 21, true, true),
	} {
		if rec := fx.post(t, e); rec.Code != http.StatusAccepted {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
	wd, _ := events.NewWorkflowEvent("c1", true, events.Workflow{Namespace: "shop", App: "web", Name: "build-w", UID: "w", Ordering: 22, CreatedAt: t0}, t0)
	if rec := fx.post(t, wd); rec.Code != http.StatusAccepted {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec, body := fx.get(t, "/api/v1/namespaces/shop/apps/web", "alice"); rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("gone app: %d %v", rec.Code, body)
	}
}

func TestSnapshotEvents(t *testing.T) {
	fx := newFixture(t, 2, map[string][]string{"alice": {"shop"}}, nil)
	fx.post(t, podEvent(t, "shop", "old", "x", 5, true, false))
	snap, _ := events.NewAppSnapshotEvent("c1", events.AppSnapshot{Kind: events.KindPods, Namespace: "shop", App: "web", Revision: 50,
		Pods: []events.Pod{{Namespace: "shop", App: "web", Name: "p", UID: "p", Ordering: 40, Phase: "Running", Ready: true, ChangedAt: t0}}}, t0)
	cs, _ := events.NewClusterSnapshotEvent("c1", events.ClusterSnapshot{Kind: events.KindPods, Revision: 50, Apps: []events.AppRef{{Namespace: "shop", App: "web"}}}, t0)
	for _, e := range []event.Event{snap, cs} {
		if rec := fx.post(t, e); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", e.Type(), rec.Code, rec.Body)
		}
	}
	rec, _ := fx.get(t, "/api/v1/namespaces/shop/apps", "alice")
	var list AppList
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if len(list.Items) != 1 || list.Items[0].App != "web" || list.Items[0].Run.State != events.RunRunning {
		t.Errorf("after the snapshot round: %s", rec.Body)
	}
}

// Malformed and unknown events are answered 400 with the reason, and Redis is untouched.
func TestInvalidEventsAreRejected(t *testing.T) {
	fx := newFixture(t, 3, nil, nil)
	ctx := context.Background()
	fx.post(t, podEvent(t, "shop", "web", "a", 10, true, false))
	before := redistest.Dump(ctx, t, fx.db, "")
	if len(before) == 0 {
		t.Fatal("nothing stored")
	}
	good := podEvent(t, "shop", "web", "a", 11, false, false)
	cases := []struct {
		name   string
		mutate func(e *event.Event)
		reason string
	}{
		{"unknown type", func(e *event.Event) { e.SetType("io.dwp.pod.exploded.v1") }, "unknown event type"},
		{"data not JSON", func(e *event.Event) { e.DataEncoded = []byte("{not json") }, "data"},
		{"data of another type", func(e *event.Event) { e.DataEncoded = []byte(`{"kind":"pods","revision":"1"}`) }, "invalid data"},
		{"subject of another app", func(e *event.Event) { e.SetSubject("shop/api") }, "subject"},
		{"foreign source", func(e *event.Event) { e.SetSource("//cluster/default") }, "source"},
		{"ordering mismatch", func(e *event.Event) { e.SetExtension(events.ExtensionOrdering, "999") }, "ordering"},
		{"bad phase", func(e *event.Event) {
			e.DataEncoded = []byte(strings.Replace(string(e.Data()), `"Running"`, `"Bored"`, 1))
		}, "phase"},
		{"not JSON content", func(e *event.Event) { _ = e.SetData("text/plain", "hello") }, "datacontenttype"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := good.Clone()
			tc.mutate(&e)
			rec := fx.post(t, e)
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), tc.reason) {
				t.Errorf("%d %q, want 400 mentioning %q", rec.Code, rec.Body, tc.reason)
			}
		})
	}
	after := redistest.Dump(ctx, t, fx.db, "")
	if len(after) != len(before) {
		t.Fatalf("keys changed: %v → %v", before, after)
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed:\n %s\n %s", k, v, after[k])
		}
	}
}

// Once Redis lost the summaries, the app list answers 503 with Retry-After, saying they
// are being rebuilt, rather than an empty list, until a round of pods and workflows has
// been applied; so does an app not found meanwhile.
func TestListSaysRebuilding(t *testing.T) {
	fx := newFixture(t, 6, map[string][]string{"alice": {"shop"}}, nil)
	fx.post(t, podEvent(t, "shop", "web", "a", 10, true, false))
	if rec, _ := fx.get(t, "/api/v1/namespaces/shop/apps", "alice"); rec.Code != http.StatusOK {
		t.Fatalf("before the loss: %d %s", rec.Code, rec.Body)
	}
	if err := fx.db.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	fx.post(t, podEvent(t, "shop", "web", "a", 11, true, false)) // a change before the round
	for _, path := range []string{"/api/v1/namespaces/shop/apps", "/api/v1/apps?namespace=shop", "/api/v1/namespaces/shop/apps/nope"} {
		rec, body := fx.get(t, path, "alice")
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" ||
			body["type"] != RebuildingType || !strings.Contains(fmt.Sprint(body["detail"]), "rebuilding") {
			t.Errorf("%s while rebuilding: %d %v %s", path, rec.Code, rec.Header(), rec.Body)
		}
	}
	fx.emptyRound(t)
	if rec, _ := fx.get(t, "/api/v1/namespaces/shop/apps/nope", "alice"); rec.Code != http.StatusNotFound {
		t.Errorf("after a round: %d %s", rec.Code, rec.Body)
	}
}

func TestRedisDownIsRetried(t *testing.T) {
	fx := newFixture(t, 4, nil, map[string]string{"DWP_REDIS_ADDR": "127.0.0.1:1"})
	rec := fx.post(t, podEvent(t, "shop", "web", "a", 10, true, false))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("Redis unreachable: %d %s, want 500 so the broker redelivers", rec.Code, rec.Body)
	}
}

func TestAccess(t *testing.T) {
	fx := newFixture(t, 5, map[string][]string{"alice": {"shop"}, "bob": {"bank"}}, nil)
	fx.post(t, podEvent(t, "shop", "web", "a", 10, true, false))
	for _, tc := range []struct {
		path, token string
		status      int
		detail      string
	}{
		{"/api/v1/namespaces/shop/apps", "", 401, "bearer token is required"},
		{"/api/v1/namespaces/shop/apps", "expired", 401, "did not accept"},
		{"/api/v1/namespaces/shop/apps", "bob", 403, `namespace \"shop\"`},
		{"/api/v1/namespaces/shop/apps/web", "bob", 403, "may not list pods"},
		{"/api/v1/namespaces/shop/apps/nope", "alice", 404, "no app"},
		{"/api/v1/namespaces/shop/apps/web", "alice", 200, `"app":"web"`},
		{"/api/v1/namespaces/Shop!/apps", "alice", 400, "namespace"},
		{"/api/v1/namespaces/shop/apps/-bad-", "alice", 400, "app"},
		{"/api/v1/namespaces/shop/apps?state=Running", "alice", 400, "unknown query parameter"},
		{"/api/v1/apps", "alice", 400, "is required"},
		{"/api/v1/apps?namespace=shop,bank,other", "alice", 403, "bank, other"},
		{"/api/v1/apps?namespace=shop&ns=x", "alice", 400, "unknown query parameter"},
	} {
		rec, _ := fx.get(t, tc.path, tc.token)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.detail) {
			t.Errorf("GET %s as %q: %d %s, want %d with %q", tc.path, tc.token, rec.Code, rec.Body, tc.status, tc.detail)
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: error as %s", tc.path, rec.Header().Get("Content-Type"))
		}
		if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s: 401 without a challenge", tc.path)
		}
	}
	// Decisions are remembered: asking again costs no review.
	n := fx.api.reviews.Load()
	fx.get(t, "/api/v1/namespaces/shop/apps", "alice")
	if fx.api.reviews.Load() != n {
		t.Error("an access decision was not reused")
	}
}

func TestParseNamespaces(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  string
		ok    bool
	}{
		{"namespace=b,a&namespace=a", "a,b", true},
		{"namespace=%20a%20,b", "a,b", true},
		{"namespace=", "", false},
		{"namespace=a,,b", "", false},
		{"", "", false},
		{"namespace=A", "", false},
		{"namespace=a&limit=3", "", false},
		{"namespace=" + strings.Repeat("n,", 50) + "x", "n,x", true},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := ParseNamespaces(q)
		if (err == nil) != tc.ok || (tc.ok && strings.Join(got, ",") != tc.want) {
			t.Errorf("%q: %v %v", tc.query, got, err)
		}
	}
	var many []string
	for i := range MaxNamespaces + 1 {
		many = append(many, "ns"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	if _, err := ParseNamespaces(url.Values{"namespace": many}); err == nil {
		t.Error("more than MaxNamespaces accepted")
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(map[string]string{})
	if err != nil || c.Cluster != DefaultClusterName || c.AccessCacheTTL != DefaultAccessCacheTTL || c.Redis.Prefix != "dwp:" {
		t.Errorf("defaults: %+v %v", c, err)
	}
	for _, bad := range []map[string]string{
		{EnvClusterName: "a/b"}, {EnvAccessCacheTTL: "soon"}, {"DWP_REDIS_DB": "x"},
	} {
		if _, err := ParseConfig(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
