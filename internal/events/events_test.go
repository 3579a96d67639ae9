package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func samplePod() Pod {
	return Pod{Namespace: "shop", App: "web", Name: "web-1", UID: "0b4c9a57-2f1e-4c62-9b9e-6a8b1d1e0f01",
		Ordering: 1234, ResourceVersion: "1234", Phase: "Running", Ready: true, Restarts: 2, ChangedAt: t0}
}

func sampleWorkflow() Workflow {
	return Workflow{Namespace: "shop", App: "web", Name: "build-x7", UID: "a1b2c3d4-0000-4000-8000-000000000001",
		Ordering: 99, Task: "build", Phase: "Succeeded", Message: "done", CreatedAt: t0, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(time.Minute)}
}

func TestParseOrdering(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ordering
		ok   bool
	}{
		{"1", 1, true},
		{"9007199254740991", MaxOrdering, true},
		{"9007199254740992", 0, false},
		{"18446744073709551615", 0, false},
		{"0007", 7, true},
		{"0", 0, false},
		{"", 0, false},
		{"18446744073709551616", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1_000", 0, false},
		{"12a", 0, false},
		{"MTIz", 0, false},
		{"123456789012345678901", 0, false},
	} {
		got, err := ParseOrdering(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseOrdering(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestOrderingKeySortsAsNumber(t *testing.T) {
	keys := []Ordering{1, 9, 10, 99, 100, 1 << 40, MaxOrdering}
	for i := 1; i < len(keys); i++ {
		if !(keys[i-1].Key() < keys[i].Key()) || len(keys[i].Key()) != 20 {
			t.Errorf("Key(%d)=%s does not sort before Key(%d)=%s", keys[i-1], keys[i-1].Key(), keys[i], keys[i].Key())
		}
	}
	b, _ := json.Marshal(MaxOrdering)
	if string(b) != `"9007199254740991"` {
		t.Errorf("JSON %s", b)
	}
	var o Ordering
	if err := json.Unmarshal([]byte(`42`), &o); err == nil {
		t.Error("a JSON number was accepted as an ordering key")
	}
}

func TestSource(t *testing.T) {
	if got, err := ClusterFromSource(Source("prod-eu.1")); err != nil || got != "prod-eu.1" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	for _, bad := range []string{"", "/dwp/clusters//watcher", "/dwp/clusters/a/b/watcher", "dwp/clusters/a/watcher",
		"/dwp/clusters/a", "/dwp/clusters/" + strings.Repeat("a", 64) + "/watcher", "/dwp/clusters/a b/watcher"} {
		if _, err := ClusterFromSource(bad); err == nil {
			t.Errorf("source %q accepted", bad)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	p, w := samplePod(), sampleWorkflow()
	for _, deleted := range []bool{false, true} {
		e, err := NewPodEvent("local", deleted, p, t0)
		if err != nil {
			t.Fatal(err)
		}
		c, d, got, err := DecodePod(e)
		if err != nil || c != "local" || d != deleted || got != p {
			t.Errorf("pod (deleted=%v): %q %v %+v %v", deleted, c, d, got, err)
		}
		e, err = NewWorkflowEvent("local", deleted, w, t0)
		if err != nil {
			t.Fatal(err)
		}
		c, d, gotw, err := DecodeWorkflow(e)
		if err != nil || c != "local" || d != deleted || !gotw.CreatedAt.Equal(w.CreatedAt) || gotw.Name != w.Name || gotw.Ordering != w.Ordering {
			t.Errorf("workflow (deleted=%v): %q %v %+v %v", deleted, c, d, gotw, err)
		}
	}
	snap := AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web", Revision: 5000, Pods: []Pod{p}}
	e, err := NewAppSnapshotEvent("local", snap, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := DecodeAppSnapshot(e); err != nil || len(got.Pods) != 1 || got.Revision != 5000 {
		t.Errorf("app snapshot: %+v %v", got, err)
	}
	cs := ClusterSnapshot{Kind: KindWorkflows, Revision: 5000}
	e, err = NewClusterSnapshotEvent("local", cs, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(e.Data()), `"apps":[]`) {
		t.Errorf("an empty cluster snapshot must list no apps explicitly: %s", e.Data())
	}
	if _, got, err := DecodeClusterSnapshot(e); err != nil || got.Kind != KindWorkflows || len(got.Apps) != 0 {
		t.Errorf("cluster snapshot: %+v %v", got, err)
	}
}

func TestEventIDsAreStablePerChange(t *testing.T) {
	p := samplePod()
	a, _ := NewPodEvent("local", false, p, t0)
	b, _ := NewPodEvent("local", false, p, t0.Add(time.Hour))
	c, _ := NewPodEvent("local", true, p, t0)
	if a.ID() != b.ID() || a.ID() == c.ID() {
		t.Errorf("ids %q %q %q", a.ID(), b.ID(), c.ID())
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := NewPodEvent("local", false, samplePod(), t0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		mutate func(e *event.Event)
		want   string
	}{
		{"wrong type", func(e *event.Event) { e.SetType(TypeWorkflowChanged) }, "type"},
		{"foreign source", func(e *event.Event) { e.SetSource("/apis/v1/namespaces/x") }, "source"},
		{"subject of another app", func(e *event.Event) { e.SetSubject("shop/api") }, "subject"},
		{"no subject", func(e *event.Event) { e.SetSubject("") }, "subject"},
		{"ordering extension differs", func(e *event.Event) { e.SetExtension(ExtensionOrdering, "1") }, "ordering"},
		{"xml", func(e *event.Event) { _ = e.SetData("application/xml", []byte("<pod/>")) }, "datacontenttype"},
		{"no data", func(e *event.Event) { e.DataEncoded = nil }, "no data"},
		{"array", func(e *event.Event) { e.DataEncoded = []byte(`[1]`) }, "not a JSON object"},
		{"trailing", func(e *event.Event) { e.DataEncoded = append(e.Data(), []byte(` {}`)...) }, "more than one"},
		{"truncated", func(e *event.Event) { e.DataEncoded = e.Data()[:20] }, "data"},
		{"wrong member type", func(e *event.Event) { e.DataEncoded = []byte(`{"ready":"yes"}`) }, "data"},
		{"bad phase", func(e *event.Event) { setJSON(e, "phase", "Sleeping") }, "phase"},
		{"bad namespace", func(e *event.Event) { setJSON(e, "namespace", "Shop!") }, "namespace"},
		{"negative restarts", func(e *event.Event) { setJSON(e, "restarts", -1) }, "restarts"},
		{"uid with colon", func(e *event.Event) { setJSON(e, "uid", "a:b") }, "uid"},
		{"zero ordering", func(e *event.Event) { setJSON(e, "ordering", "0") }, "ordering"},
		{"numeric ordering", func(e *event.Event) { setJSON(e, "ordering", 1234) }, "ordering"},
		{"no changedAt", func(e *event.Event) { setJSON(e, "changedAt", nil) }, "changedAt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := good.Clone()
			tc.mutate(&e)
			_, _, _, err := DecodePod(e)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// setJSON changes one member of the event's data.
func setJSON(e *event.Event, key string, v any) {
	var m map[string]any
	_ = json.Unmarshal(e.Data(), &m)
	if v == nil {
		delete(m, key)
	} else {
		m[key] = v
	}
	b, _ := json.Marshal(m)
	e.DataEncoded = b
}

func TestSnapshotValidation(t *testing.T) {
	p := samplePod()
	other := p
	other.App = "api"
	dup := p
	for _, tc := range []struct {
		name string
		s    AppSnapshot
		want string
	}{
		{"unknown kind", AppSnapshot{Kind: "nodes", Namespace: "shop", App: "web", Revision: 1}, "kind"},
		{"workflows in pods", AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web", Revision: 1, Workflows: []Workflow{sampleWorkflow()}}, "workflows"},
		{"item of another app", AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web", Revision: 1, Pods: []Pod{other}}, "belongs to"},
		{"item twice", AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web", Revision: 1, Pods: []Pod{p, dup}}, "twice"},
		{"no revision", AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web"}, "revision"},
	} {
		if err := tc.s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	cs := ClusterSnapshot{Kind: KindPods, Revision: 1, Apps: []AppRef{{"shop", "web"}, {"shop", "web"}}}
	if err := cs.Validate(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate app: %v", err)
	}
}

func TestTruncateMessage(t *testing.T) {
	long := strings.Repeat("é", MaxMessageLen) // 2 bytes each
	got := TruncateMessage(long)
	if len(got) > MaxMessageLen || !strings.HasPrefix(long, got) || len(got) < MaxMessageLen-1 {
		t.Errorf("len %d", len(got))
	}
	if TruncateMessage("ok\xff") != "ok\uFFFD" {
		t.Error("invalid UTF-8 kept")
	}
}

func TestWorkflowStep(t *testing.T) {
	good := WorkflowStep{Namespace: "shop", App: "web", Workflow: "dwp-cd-app-service-x2b4c", UID: "u-1", Node: "dwp-cd-app-service-x2b4c-1234567", Step: "gitops-sync", Ordering: 7}
	e, err := NewWorkflowStepEvent("c", good, 3, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, got, err := DecodeWorkflowStep(e); err != nil || got != good {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	e2, _ := NewWorkflowStepEvent("c", good, 4, t0)
	if e.ID() == e2.ID() {
		t.Error("two sends of a waiting step share an id: a broker would drop the recheck")
	}
	for name, mutate := range map[string]func(s *WorkflowStep){
		"step without the prefix": func(s *WorkflowStep) { s.Step = "commit" },
		"bare prefix":             func(s *WorkflowStep) { s.Step = StepTemplatePrefix },
		"node with a slash":       func(s *WorkflowStep) { s.Node = "a/b" },
		"no ordering":             func(s *WorkflowStep) { s.Ordering = 0 },
		"bad namespace":           func(s *WorkflowStep) { s.Namespace = "Shop" },
	} {
		s := good
		mutate(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
