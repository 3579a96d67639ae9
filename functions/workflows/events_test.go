package workflows

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/cloudevents/sdk-go/v2/event"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/dwp-sre/dwp-sre/internal/eventrouter"
)

func finishedEvent(t testing.TB, data any) event.Event {
	t.Helper()
	e := event.New()
	e.SetID("1")
	e.SetType(EventWorkflowFinished)
	e.SetSource("/argo/workflows")
	if raw, ok := data.(string); ok {
		e.SetDataContentType(event.ApplicationJSON)
		e.DataEncoded = []byte(raw)
	} else if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestOnFinished(t *testing.T) {
	started := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	live := workflow("team", "build-1", started, wfv1.WorkflowRunning, map[string]string{"app": "shop", DefaultTaskLabel: "build", LabelCreator: "alice"})
	live.Status.StartedAt.Time = started
	fc := newFakeCluster(t, nil, []runtime.Object{live}...)
	f := newTestFamily(fc, nil)
	er := eventrouter.New()
	f.Events(er)

	t.Run("enriched from the live workflow", func(t *testing.T) {
		reply, err := f.onFinished(context.Background(), finishedEvent(t, FinishedData{Namespace: "team", Name: "build-1", UID: string(live.UID), Phase: "Failed"}))
		if err != nil {
			t.Fatal(err)
		}
		if reply.Type() != EventWorkflowHistory || reply.Source() != EventSource || reply.Subject() != "team/shop" || reply.ID() != string(live.UID)+".Failed" {
			t.Fatalf("reply %s", reply)
		}
		if err := reply.Validate(); err != nil {
			t.Fatal(err)
		}
		var entry wfv1.Workflow
		if err := json.Unmarshal(reply.Data(), &entry); err != nil {
			t.Fatal(err)
		}
		// The hook's phase wins over the live "Running"; labels come from the cluster.
		if entry.Status.Phase != wfv1.WorkflowFailed || entry.Labels[DefaultTaskLabel] != "build" || entry.Labels[LabelCreator] != "alice" || entry.Status.Nodes != nil {
			t.Fatalf("entry %+v", entry)
		}
		if !entry.Status.StartedAt.Time.Equal(started) || entry.Status.FinishedAt.IsZero() {
			t.Fatalf("times %v %v", entry.Status.StartedAt, entry.Status.FinishedAt)
		}
	})

	t.Run("workflow gone or replaced", func(t *testing.T) {
		for _, d := range []FinishedData{
			{Namespace: "team", Name: "deleted", UID: "u-1", Phase: "Succeeded"},
			{Namespace: "team", Name: "build-1", UID: "older-uid", Phase: "Succeeded"},
		} {
			reply, err := f.onFinished(context.Background(), finishedEvent(t, d))
			if err != nil {
				t.Fatal(err)
			}
			var entry wfv1.Workflow
			if err := json.Unmarshal(reply.Data(), &entry); err != nil {
				t.Fatal(err)
			}
			if entry.Name != d.Name || string(entry.UID) != d.UID || entry.Status.Phase != "Succeeded" || len(entry.Labels) != 0 || reply.Subject() != "team" {
				t.Fatalf("entry %+v subject %q", entry, reply.Subject())
			}
		}
	})

	invalid := []struct {
		name string
		data any
		ct   string
	}{
		{"not json", "{", ""},
		{"array", `[1,2]`, ""},
		{"missing uid", FinishedData{Namespace: "team", Name: "a", Phase: "Failed"}, ""},
		{"bad namespace", FinishedData{Namespace: "Team!", Name: "a", UID: "u", Phase: "Failed"}, ""},
		{"bad name", FinishedData{Namespace: "team", Name: "", UID: "u", Phase: "Failed"}, ""},
		{"running is not final", FinishedData{Namespace: "team", Name: "a", UID: "u", Phase: "Running"}, ""},
		{"xml", FinishedData{Namespace: "team", Name: "a", UID: "u", Phase: "Failed"}, "application/xml"},
	}
	for _, tt := range invalid {
		t.Run("invalid "+tt.name, func(t *testing.T) {
			e := finishedEvent(t, tt.data)
			if tt.ct != "" {
				e.SetDataContentType(tt.ct)
			}
			_, err := f.onFinished(context.Background(), e)
			if err == nil || !eventrouter.IsInvalid(err) {
				t.Fatalf("got %v, want an Invalid error", err)
			}
		})
	}

	t.Run("registered and its reply is not handled", func(t *testing.T) {
		types := er.Types()
		if len(types) != 1 || types[0] != EventWorkflowFinished {
			t.Fatalf("types %v", types)
		}
		for _, rt := range f.ReplyTypes() {
			for _, ht := range types {
				if rt == ht {
					t.Fatalf("reply type %s is handled", rt)
				}
			}
		}
	})
}
