package events

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

// FuzzDecode feeds arbitrary data, subjects and ordering extensions to every decoder:
// they must never panic, and what one accepts must survive being built and decoded again.
func FuzzDecode(f *testing.F) {
	p, _ := json.Marshal(samplePod())
	w, _ := json.Marshal(sampleWorkflow())
	snap, _ := json.Marshal(AppSnapshot{Kind: KindPods, Namespace: "shop", App: "web", Revision: 9, Pods: []Pod{samplePod()}})
	cs, _ := json.Marshal(ClusterSnapshot{Kind: KindPods, Revision: 9, Apps: []AppRef{{"shop", "web"}}})
	f.Add(uint8(0), string(p), "shop/web", "1234")
	f.Add(uint8(1), string(w), "shop/web", "99")
	f.Add(uint8(2), string(snap), "shop/web", "9")
	f.Add(uint8(3), string(cs), "", "9")
	f.Add(uint8(0), `{"namespace":"a","app":"b","name":"c","uid":"d","ordering":"1","phase":"Running","changedAt":"2026-01-01T00:00:00Z"}`, "a/b", "")
	f.Add(uint8(1), `{}`, "x", "x")
	f.Add(uint8(2), `{"kind":"pods","pods":[{}]}`, "", "")
	f.Add(uint8(3), `{"kind":"workflows","revision":"1","apps":[{"namespace":"a","app":"-"}]}`, "", "1")
	f.Add(uint8(0), "\x00\xff{", "/", "18446744073709551616")
	f.Add(uint8(4), `{"namespace":"shop","app":"web","workflow":"dwp-cd-app-service-x2b4c","uid":"u-1","node":"dwp-cd-app-service-x2b4c-1234","step":"gitops-commit","ordering":"7"}`, "shop/web", "7")
	f.Add(uint8(4), `{"namespace":"shop","app":"web","workflow":"w","uid":"u","node":"w-1","step":"commit","ordering":"7"}`, "shop/web", "7")
	app, _ := json.Marshal(sampleApplication())
	f.Add(uint8(6), string(app), "shop/web", "321")
	f.Add(uint8(6), `{"namespace":"a","app":"b","name":"a.b","uid":"u","ordering":"5","operationMessage":"x"}`, "a/b", "5")
	f.Add(uint8(6), `{"namespace":"a","app":"b","name":"a.b","uid":"u","ordering":"5","sync":"Synced","revision":"\u00e9"}`, "a/b", "")
	f.Fuzz(func(t *testing.T, which uint8, data, subject, ordering string) {
		e := event.New()
		e.SetID("1")
		e.SetSource(Source("c"))
		e.SetSubject(subject)
		if ordering != "" {
			e.SetExtension(ExtensionOrdering, ordering)
		}
		e.DataEncoded = []byte(data)
		e.SetDataContentType(ContentType)
		switch which % 7 {
		case 0:
			e.SetType(TypePodChanged)
			_, deleted, got, err := DecodePod(e)
			if err == nil {
				again, err := NewPodEvent("c", deleted, got, t0)
				if err != nil {
					t.Fatalf("accepted pod cannot be rebuilt: %v", err)
				}
				if _, _, got2, err := DecodePod(again); err != nil || !got2.ChangedAt.Equal(got.ChangedAt) || got2.UID != got.UID {
					t.Fatalf("pod does not round-trip: %v", err)
				}
			}
		case 1:
			e.SetType(TypeWorkflowDeleted)
			_, deleted, got, err := DecodeWorkflow(e)
			if err == nil {
				again, err := NewWorkflowEvent("c", deleted, got, t0)
				if err != nil {
					t.Fatalf("accepted workflow cannot be rebuilt: %v", err)
				}
				if _, d2, _, err := DecodeWorkflow(again); err != nil || d2 != deleted {
					t.Fatalf("workflow does not round-trip: %v", err)
				}
			}
		case 2:
			e.SetType(TypeAppSnapshot)
			_, got, err := DecodeAppSnapshot(e)
			if err == nil {
				again, err := NewAppSnapshotEvent("c", got, t0)
				if err != nil {
					t.Fatalf("accepted snapshot cannot be rebuilt: %v", err)
				}
				if _, got2, err := DecodeAppSnapshot(again); err != nil || len(got2.Pods) != len(got.Pods) || len(got2.Workflows) != len(got.Workflows) {
					t.Fatalf("snapshot does not round-trip: %v", err)
				}
			}
		case 3:
			e.SetType(TypeClusterSnapshot)
			_, got, err := DecodeClusterSnapshot(e)
			if err == nil {
				again, err := NewClusterSnapshotEvent("c", got, t0)
				if err != nil {
					t.Fatalf("accepted cluster snapshot cannot be rebuilt: %v", err)
				}
				_, got2, err := DecodeClusterSnapshot(again)
				if err != nil || len(got2.Apps) != len(got.Apps) || (len(got.Apps) > 0 && !reflect.DeepEqual(got2.Apps, got.Apps)) {
					t.Fatalf("cluster snapshot does not round-trip: %v", err)
				}
			}
		case 4:
			e.SetType(TypeWorkflowStep)
			_, got, err := DecodeWorkflowStep(e)
			if err == nil {
				again, err := NewWorkflowStepEvent("c", got, 1, t0)
				if err != nil {
					t.Fatalf("accepted step cannot be rebuilt: %v", err)
				}
				if _, got2, err := DecodeWorkflowStep(again); err != nil || got2 != got {
					t.Fatalf("step does not round-trip: %v", err)
				}
			}
		case 5:
			e.SetType(TypeWorkflowSucceeded)
			_, got, err := DecodeWorkflowSucceeded(e)
			if err == nil {
				again, err := NewWorkflowSucceededEvent("c", got, t0)
				if err != nil {
					t.Fatalf("accepted success cannot be rebuilt: %v", err)
				}
				if _, got2, err := DecodeWorkflowSucceeded(again); err != nil || got2.UID != got.UID {
					t.Fatalf("success does not round-trip: %v", err)
				}
			}
		case 6:
			e.SetType(TypeApplicationChanged)
			_, deleted, got, err := DecodeApplication(e)
			if err == nil {
				again, err := NewApplicationEvent("c", deleted, got, t0)
				if err != nil {
					t.Fatalf("accepted application cannot be rebuilt: %v", err)
				}
				if _, _, got2, err := DecodeApplication(again); err != nil || got2.UID != got.UID || got2.Sync != got.Sync ||
					!got2.OperationFinishedAt.Equal(got.OperationFinishedAt) {
					t.Fatalf("application does not round-trip: %v", err)
				}
			}
		}
	})
}
