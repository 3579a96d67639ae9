package hub

import (
	"encoding/json"
	"fmt"
	"io"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// benchPod is a pod of typical size for the portal's pod list.
func benchPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-7d9c6b5f4-x2x8q", Namespace: "shop", ResourceVersion: "123456",
			Labels:      map[string]string{"app": "web", "pod-template-hash": "7d9c6b5f4"},
			Annotations: map[string]string{"kwok.x-k8s.io/usage-cpu": "100m"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "registry.example/shop/web:1.2.3",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
			}},
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.12", ContainerStatuses: []corev1.ContainerStatus{{
			Name: "web", Ready: true, RestartCount: 1,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		}}},
	}
}

type watchPayload struct {
	Type   string      `json:"type"`
	Object *corev1.Pod `json:"object"`
}

// drain plays the clients' writers: every queued message is written out.
func drain(clients []*Client) {
	var ds []Delivery
	for _, c := range clients {
		ds = c.Take(ds[:0])
		for _, d := range ds {
			_, _ = io.Discard.Write(d.Msg.Wire)
		}
	}
}

// BenchmarkFanout measures one upstream event delivered to N subscribers: "shared" encodes
// the event once and hands the same bytes to all (what the router does), "per-client"
// encodes it for each subscriber (what a router with one upstream per client does, at best).
// One op is one event to all N subscribers.
func BenchmarkFanout(b *testing.B) {
	pod := benchPod()
	for _, n := range []int{1, 10, 100, 1000} {
		clients := make([]*Client, n)
		var fan Fanout
		subs := make([]*Subscription, n)
		for i := range clients {
			clients[i] = NewClient(16, nil)
			subs[i] = clients[i].NewSubscription("")
			fan.Add(subs[i])
		}
		b.Run(fmt.Sprintf("shared/subscribers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				payload, err := json.Marshal(watchPayload{Type: "MODIFIED", Object: pod})
				if err != nil {
					b.Fatal(err)
				}
				fan.Broadcast(NewMessage(false, NewEvent("modified", "123456", payload)))
				drain(clients)
			}
		})
		b.Run(fmt.Sprintf("per-client/subscribers=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, s := range subs {
					payload, err := json.Marshal(watchPayload{Type: "MODIFIED", Object: pod})
					if err != nil {
						b.Fatal(err)
					}
					s.Deliver(NewMessage(false, NewEvent("modified", "123456", payload)))
				}
				drain(clients)
			}
		})
	}
}
