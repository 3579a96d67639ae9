package events

import (
	"strings"
	"testing"
	"time"
)

func sampleApplication() Application {
	return Application{Namespace: "shop", App: "web", Name: "shop.web", UID: "9d1c2b3a-0000-4000-8000-00000000000a",
		Ordering: 321, ResourceVersion: "321", Sync: "Synced", Health: "Degraded", HealthMessage: "Back-off pulling image",
		Revision: "4f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6", OperationPhase: "Failed",
		OperationMessage: "one or more objects failed to apply", OperationFinishedAt: t0}
}

func TestApplicationRoundTrip(t *testing.T) {
	a := sampleApplication()
	for _, deleted := range []bool{false, true} {
		e, err := NewApplicationEvent("local", deleted, a, t0)
		if err != nil {
			t.Fatal(err)
		}
		if e.Subject() != "shop/web" {
			t.Errorf("subject %q", e.Subject())
		}
		c, d, got, err := DecodeApplication(e)
		if err != nil || c != "local" || d != deleted || got != a {
			t.Errorf("deleted=%v: %q %v %+v %v", deleted, c, d, got, err)
		}
	}
	a2 := a
	a2.Ordering++
	e1, _ := NewApplicationEvent("local", false, a, t0)
	e2, _ := NewApplicationEvent("local", false, a2, t0)
	e3, _ := NewApplicationEvent("local", true, a, t0)
	if e1.ID() == e2.ID() || e1.ID() == e3.ID() {
		t.Errorf("ids %q %q %q", e1.ID(), e2.ID(), e3.ID())
	}
	// A new Application, before Argo CD looked at it, is valid.
	fresh := Application{Namespace: "shop", App: "web", Name: "shop.web", UID: "u", Ordering: 1}
	if err := fresh.Validate(); err != nil {
		t.Errorf("fresh Application: %v", err)
	}
}

func TestApplicationValidation(t *testing.T) {
	for name, tc := range map[string]struct {
		mutate func(a *Application)
		want   string
	}{
		"status with a space":      {func(a *Application) { a.Sync = "Out Of Sync" }, "sync"},
		"long health":              {func(a *Application) { a.Health = strings.Repeat("H", MaxStatusLen+1) }, "health"},
		"phase with a digit":       {func(a *Application) { a.OperationPhase = "Phase1" }, "operationPhase"},
		"revision with a space":    {func(a *Application) { a.Revision = "a b" }, "revision"},
		"long revision":            {func(a *Application) { a.Revision = strings.Repeat("a", MaxRevisionLen+1) }, "revision"},
		"long message":             {func(a *Application) { a.HealthMessage = strings.Repeat("m", MaxMessageLen+1) }, "healthMessage"},
		"invalid UTF-8":            {func(a *Application) { a.OperationMessage = "\xff" }, "operationMessage"},
		"operation without phase":  {func(a *Application) { a.OperationPhase = "" }, "operationPhase"},
		"finishedAt out of range":  {func(a *Application) { a.OperationFinishedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "operationFinishedAt"},
		"namespace not a label":    {func(a *Application) { a.Namespace = "Shop" }, "namespace"},
		"no ordering":              {func(a *Application) { a.Ordering = 0 }, "ordering"},
		"name not a subdomain":     {func(a *Application) { a.Name = "shop/web" }, "name"},
		"app not a label value":    {func(a *Application) { a.App = "-web" }, "app"},
		"uid with a colon":         {func(a *Application) { a.UID = "a:b" }, "uid"},
		"resourceVersion too long": {func(a *Application) { a.ResourceVersion = strings.Repeat("1", 65) }, "resourceVersion"},
	} {
		a := sampleApplication()
		tc.mutate(&a)
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %s", name, err, tc.want)
		}
	}
	if got := TruncateRevision(strings.Repeat("a", 200)); len(got) != MaxRevisionLen {
		t.Errorf("TruncateRevision kept %d", len(got))
	}
	if got := TruncateRevision("a\nb"); got != "" {
		t.Errorf("TruncateRevision(%q) = %q", "a\nb", got)
	}
}

func TestApplicationSnapshot(t *testing.T) {
	a := sampleApplication()
	s := AppSnapshot{Kind: KindApplications, Namespace: "shop", App: "web", Revision: 400, Applications: []Application{a}}
	e, err := NewAppSnapshotEvent("local", s, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := DecodeAppSnapshot(e); err != nil || len(got.Applications) != 1 || got.Applications[0] != a {
		t.Errorf("snapshot: %+v %v", got, err)
	}
	bad := s
	bad.Pods = []Pod{samplePod()}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "pods") {
		t.Errorf("pods in a snapshot of applications: %v", err)
	}
	other := a
	other.App = "api"
	bad = AppSnapshot{Kind: KindApplications, Namespace: "shop", App: "web", Revision: 400, Applications: []Application{other}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "belongs to") {
		t.Errorf("Application of another app: %v", err)
	}
	cs := ClusterSnapshot{Kind: KindApplications, Revision: 400, Apps: []AppRef{{"shop", "web"}}}
	if err := cs.Validate(); err != nil {
		t.Errorf("cluster snapshot of applications: %v", err)
	}
}
