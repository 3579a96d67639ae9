package summaries

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"sigs.k8s.io/yaml"

	"github.com/dwp-sre/dwp-sre/internal/events"
)

func applicationEvent(t testing.TB, app events.Application, deleted bool) event.Event {
	t.Helper()
	e, err := events.NewApplicationEvent("c1", deleted, app, t0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// The Application's events keep the summary's cd block; an app deployed by Argo CD
// before any pod runs is listed; a late event cannot undo the Application's deletion.
func TestApplicationEventsKeepTheCDBlock(t *testing.T) {
	fx := newFixture(t, 6, map[string][]string{"alice": {"shop"}}, nil)
	a := events.Application{Namespace: "shop", App: "web", Name: "shop.web", UID: "a1", Ordering: 30}
	synced := a
	synced.Ordering, synced.Sync, synced.Health, synced.Revision = 32, "Synced", "Healthy", "0123456789abcdef0123456789abcdef01234567"
	synced.OperationPhase, synced.OperationMessage, synced.OperationFinishedAt = "Succeeded", "successfully synced (all tasks run)", t0.Add(time.Minute)
	for _, e := range []event.Event{applicationEvent(t, synced, false), applicationEvent(t, a, false)} {
		if rec := fx.post(t, e); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", e.Type(), rec.Code, rec.Body)
		}
	}
	rec, _ := fx.get(t, "/api/v1/namespaces/shop/apps/web", "alice")
	var sum events.AppSummary
	if err := json.Unmarshal(rec.Body.Bytes(), &sum); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("get: %d %s", rec.Code, rec.Body)
	}
	want := events.CDStatus{Application: "shop.web", Sync: "Synced", Health: "Healthy", Revision: synced.Revision,
		Operation: &events.CDOperation{Phase: "Succeeded", Message: synced.OperationMessage, FinishedAt: t0.Add(time.Minute)}}
	if sum.CD == nil || sum.CD.Operation == nil || *sum.CD.Operation != *want.Operation || sum.CD.Sync != want.Sync ||
		sum.CD.Health != want.Health || sum.CD.Revision != want.Revision || sum.CD.Application != want.Application ||
		sum.Run.State != events.RunStopped || sum.Revision != "32" {
		t.Errorf("summary %s", rec.Body)
	}

	gone := synced
	gone.Ordering = 40
	late := synced
	late.Ordering, late.Health = 35, "Degraded"
	for _, e := range []event.Event{applicationEvent(t, gone, true), applicationEvent(t, late, false)} {
		if rec := fx.post(t, e); rec.Code != http.StatusAccepted {
			t.Fatalf("%s: %d %s", e.Type(), rec.Code, rec.Body)
		}
	}
	if rec, _ := fx.get(t, "/api/v1/namespaces/shop/apps/web", "alice"); rec.Code != http.StatusNotFound {
		t.Errorf("after the deletion: %d %s", rec.Code, rec.Body)
	}

	bad := applicationEvent(t, synced, false)
	bad.DataEncoded = []byte(strings.Replace(string(bad.Data()), `"Synced"`, `"In Sync"`, 1))
	if rec := fx.post(t, bad); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "sync") {
		t.Errorf("invalid sync status: %d %s", rec.Code, rec.Body)
	}
}

// The OpenAPI document's cd block names exactly the members the summary has.
func TestOpenAPIDescribesTheCDBlock(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]schema `json:"schemas"`
		} `json:"components"`
	}
	if err := yaml.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	cd := doc.Components.Schemas["AppSummary"].Properties["cd"]
	full := events.CDStatus{Application: "a", Sync: "s", Health: "h", HealthMessage: "m", Revision: "r",
		Operation: &events.CDOperation{Phase: "p", Message: "m", FinishedAt: t0}}
	var members map[string]json.RawMessage
	b, _ := json.Marshal(full)
	_ = json.Unmarshal(b, &members)
	if got, want := slices.Sorted(maps.Keys(cd.Properties)), slices.Sorted(maps.Keys(members)); !slices.Equal(got, want) {
		t.Errorf("cd properties %v, summary members %v", got, want)
	}
	b, _ = json.Marshal(full.Operation)
	members = nil
	_ = json.Unmarshal(b, &members)
	if got, want := slices.Sorted(maps.Keys(cd.Properties["operation"].Properties)), slices.Sorted(maps.Keys(members)); !slices.Equal(got, want) {
		t.Errorf("cd.operation properties %v, summary members %v", got, want)
	}
}

type schema struct {
	Properties map[string]schema `json:"properties"`
}
