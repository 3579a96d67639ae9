package summarystore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

func application(app, uid string, ord events.Ordering) events.Application {
	return events.Application{Namespace: "shop", App: app, Name: "shop." + app, UID: uid, Ordering: ord}
}

// An app whose only object is its Application has a summary; the script's cd block is
// Summarize's, for tricky strings too; the Application's deletion removes the summary.
func TestApplicationSummary(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 10)
	changes := make(chan events.SummaryChange, 10)
	ready := make(chan struct{})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_ = s.Watch(wctx, "c1", "shop", func() { close(ready) }, func(c events.SummaryChange) error { changes <- c; return nil })
	}()
	<-ready

	a := application("web", "a1", 10)
	if n, err := s.ApplyApplication(ctx, "c1", false, a); err != nil || n != 1 {
		t.Fatalf("new Application: %d %v", n, err)
	}
	sum, ok, err := s.Summary(ctx, "c1", "shop", "web")
	if err != nil || !ok {
		t.Fatalf("no summary for an app with only an Application: %v", err)
	}
	if sum.Run.State != events.RunStopped || sum.CD == nil || sum.CD.Application != "shop.web" || sum.CD.Sync != "Unknown" ||
		sum.CD.Health != "Unknown" || sum.CD.Operation != nil || sum.Revision != "10" || sum.CICD != nil {
		t.Errorf("before Argo CD looked: %s", mustJSON(t, sum))
	}
	if c := <-changes; c.Summary == nil || c.Summary.CD == nil {
		t.Errorf("published %+v", c)
	}

	finished := time.Date(2026, 3, 1, 12, 0, 7, 900, time.FixedZone("X", 7200))
	a.Ordering, a.Sync, a.Health = 12, "OutOfSync", "Degraded"
	a.HealthMessage = "quote \" slash / backslash \\ nul \x00 ü \u2028 <&>"
	a.Revision = "v1.2.3+build.7"
	a.OperationPhase, a.OperationMessage, a.OperationFinishedAt = "Failed", "one or more objects failed to apply", finished
	if n, err := s.ApplyApplication(ctx, "c1", false, a); err != nil || n != 1 {
		t.Fatalf("status: %d %v", n, err)
	}
	p := pod("web", "p1", 11, true)
	if _, err := s.ApplyPod(ctx, "c1", false, p); err != nil {
		t.Fatal(err)
	}
	got, _, _ := s.Summary(ctx, "c1", "shop", "web")
	want, _ := Summarize("c1", "shop", "web", []events.Pod{p}, nil, a)
	if g, w := mustJSON(t, got), mustJSON(t, want); g != w {
		t.Errorf("script:    %s\nSummarize: %s", g, w)
	}
	if op := got.CD.Operation; op == nil || op.Phase != "Failed" || !op.FinishedAt.Equal(finished.Truncate(time.Second)) ||
		!got.UpdatedAt.Equal(finished.Truncate(time.Second)) || got.Revision != "12" {
		t.Errorf("after a failed sync: %s", mustJSON(t, got))
	}

	// The same state again (Argo CD rewrote reconciledAt), or an older one: nothing changes.
	if n, _ := s.ApplyApplication(ctx, "c1", false, a); n != 0 {
		t.Error("a duplicate changed the summary")
	}
	old := a
	old.Ordering, old.Sync = 11, "Synced"
	if n, _ := s.ApplyApplication(ctx, "c1", false, old); n != 0 {
		t.Error("an older state changed the summary")
	}

	// Gone: the pod stays, the cd block goes; then the pod goes, and the app with it.
	a.Ordering = 20
	if n, err := s.ApplyApplication(ctx, "c1", true, a); err != nil || n != 1 {
		t.Fatalf("deletion: %d %v", n, err)
	}
	if got, ok, _ := s.Summary(ctx, "c1", "shop", "web"); !ok || got.CD != nil {
		t.Errorf("after the Application's deletion: %s", mustJSON(t, got))
	}
	if _, err := s.ApplyPod(ctx, "c1", true, pod("web", "p1", 21, true)); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Summary(ctx, "c1", "shop", "web"); ok {
		t.Error("an app without objects kept its summary")
	}
}

// Of two Applications of one app, the one of the least name is shown, whatever the order.
func TestTwoApplications(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 11)
	b := application("web", "b", 5)
	b.Name, b.Sync = "b-web", "Synced"
	a := application("web", "a", 6)
	a.Name, a.Sync = "a-web", "OutOfSync"
	for _, x := range []events.Application{b, a} {
		if _, err := s.ApplyApplication(ctx, "c1", false, x); err != nil {
			t.Fatal(err)
		}
	}
	got, _, _ := s.Summary(ctx, "c1", "shop", "web")
	want, _ := Summarize("c1", "shop", "web", nil, nil, a, b)
	if got.CD == nil || got.CD.Application != "a-web" || mustJSON(t, got) != mustJSON(t, want) {
		t.Errorf("script %s\nwant   %s", mustJSON(t, got), mustJSON(t, want))
	}
}

// Snapshot rounds of applications remove what is gone and leave other kinds alone.
func TestApplicationSnapshots(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, 12)
	if _, err := s.ApplyPod(ctx, "c1", false, pod("web", "p1", 5, true)); err != nil {
		t.Fatal(err)
	}
	for _, x := range []events.Application{application("web", "a1", 6), application("api", "a2", 7)} {
		if _, err := s.ApplyApplication(ctx, "c1", false, x); err != nil {
			t.Fatal(err)
		}
	}
	// At revision 10 only api's Application is left, changed.
	api := application("api", "a2", 9)
	api.Health = "Healthy"
	if _, err := s.ApplyAppSnapshot(ctx, "c1", events.AppSnapshot{Kind: events.KindApplications, Namespace: "shop", App: "api",
		Revision: 10, Applications: []events.Application{api}}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ApplyClusterSnapshot(ctx, "c1", events.ClusterSnapshot{Kind: events.KindApplications, Revision: 10,
		Apps: []events.AppRef{{Namespace: "shop", App: "api"}}}); err != nil || n != 1 {
		t.Fatalf("cluster snapshot: %d %v", n, err)
	}
	web, ok, _ := s.Summary(ctx, "c1", "shop", "web")
	if !ok || web.CD != nil || web.Run.Pods != 1 {
		t.Errorf("web after the round: %s", mustJSON(t, web))
	}
	apiSum, ok, _ := s.Summary(ctx, "c1", "shop", "api")
	if !ok || apiSum.CD == nil || apiSum.CD.Health != "Healthy" {
		t.Errorf("api after the round: %s", mustJSON(t, apiSum))
	}
	// A late event of web's Application from before the round cannot bring it back.
	if n, _ := s.ApplyApplication(ctx, "c1", false, application("web", "a1", 8)); n != 0 {
		t.Error("a state older than the round brought a gone Application back")
	}
	if _, err := s.ApplyAppSnapshot(ctx, "c1", events.AppSnapshot{Kind: "nodes", Namespace: "shop", App: "web", Revision: 11}); err == nil ||
		!strings.Contains(err.Error(), "kind") {
		t.Errorf("unknown kind: %v", err)
	}
}
