package upstream

import (
	"context"
	"fmt"
	"github.com/dwp-sre/dwp-sre/sse-router/api"
	"log/slog"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/sse-router/hub"
)

// oneShotLog serves a log request without follow: one read, the lines, the end. It is
// not shared: it holds no upstream open.
type oneShotLog struct {
	cs        kubernetes.Interface
	ns, pod   string
	container string
	metrics   *hub.Metrics
	log       *slog.Logger
}

// Subscribe implements Topic.
func (o *oneShotLog) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	events, err := o.read(ctx, j)
	if err != nil {
		if gone, _, _ := logProblem(err); gone {
			events = append(events, notFoundEvent("", fmt.Sprintf("pod %s/%s not found", o.ns, o.pod)))
		} else {
			o.log.Info("pod log read failed", "namespace", o.ns, "pod", o.pod, "container", o.container, "err", err)
			events = append(events, errorEvent("", err, false))
		}
	}
	s.Deliver(hub.NewMessage(true, append(events, endEvent("done"))...))
	return nil
}

func (o *oneShotLog) read(ctx context.Context, j Join) ([]hub.Event, error) {
	container := o.container
	if container == "" {
		o.metrics.Request(string(api.KindPodLog), "get")
		pod, err := o.cs.CoreV1().Pods(o.ns).Get(ctx, o.pod, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if container, err = defaultContainer(pod); err != nil {
			return nil, err
		}
	}
	req := logRequest{container: container}
	w := linesWanted(j)
	var skip *api.LogPos
	if w.hasAfter {
		since := w.after.Time()
		req.since, skip = &since, &w.after
	} else if w.tail >= 0 {
		req.tail = &w.tail
	}
	o.metrics.Request(string(api.KindPodLog), "fetch")
	lines, err := fetchLog(ctx, o.cs, o.ns, o.pod, req, skip)
	events := make([]hub.Event, 0, len(lines))
	for _, l := range lines {
		events = append(events, encodeLogLine(l, "", "", ""))
	}
	return events, err
}

// Unsubscribe implements Topic.
func (o *oneShotLog) Unsubscribe(*hub.Subscription) {}
