package workflows

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
)

// The history's newest workflow is the one the app's summary shows, also when several
// were created in the same second (issue 9, part 6): both order by creation time to the
// second, then by name, greatest first.
func TestHistoryAndSummaryAgreeOnTies(t *testing.T) {
	second := time.Date(2026, 1, 1, 0, 0, 7, 0, time.UTC)
	created := []string{"shop-b", "shop-a", "shop-c9", "shop-c10"}
	var objs []runtime.Object
	var states []events.Workflow
	for i, n := range created {
		objs = append(objs, workflow("team", n, second, wfv1.WorkflowRunning, map[string]string{"app": "shop"}))
		states = append(states, events.Workflow{Namespace: "team", App: "shop", Name: n, UID: "uid-" + n,
			Ordering: events.Ordering(10 + i), CreatedAt: second.Add(time.Duration(i) * 100 * time.Millisecond)})
	}
	objs = append(objs, workflow("team", "shop-old", second.Add(-time.Second), wfv1.WorkflowRunning, map[string]string{"app": "shop"}))
	h := newRouter(newTestFamily(newFakeCluster(t, map[string][]string{"alice": {"team"}}, objs...), nil))
	r := do(t, h, http.MethodGet, "/api/v1/namespaces/team/workflows?app=shop", "alice", "")
	if r.code != http.StatusOK {
		t.Fatalf("status %d: %s", r.code, r.body)
	}
	var l WorkflowList
	if err := json.Unmarshal([]byte(r.body), &l); err != nil {
		t.Fatal(err)
	}
	sum, ok := summarystore.Summarize("c", "team", "shop", nil, states)
	if !ok || len(l.Items) != 5 {
		t.Fatalf("summary %v, %d history items", ok, len(l.Items))
	}
	if got, want := l.Items[0].Name, sum.CICD.Workflow; got != want {
		t.Errorf("history's newest is %s, the summary's %s", got, want)
	}
	if want := []string{"shop-c9", "shop-c10", "shop-b", "shop-a", "shop-old"}; !slices.Equal(names(l.Items), want) {
		t.Errorf("history %v, want %v", names(l.Items), want)
	}
}
