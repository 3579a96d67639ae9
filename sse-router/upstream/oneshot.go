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

// Subscribe implements Topic. The lines go out in chunks as they are read (the last
// ones with the end), so that a large log is never held whole.
func (o *oneShotLog) Subscribe(ctx context.Context, s *hub.Subscription, j Join) error {
	ch := chunker{send: func(m *hub.Message) { s.Deliver(m) }}
	err := o.read(ctx, j, func(lines []logLine) {
		for _, l := range lines {
			ch.add(encodeLogLine(l, "", "", ""))
		}
	})
	events := ch.events
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

func (o *oneShotLog) read(ctx context.Context, j Join, emit func([]logLine)) error {
	container := o.container
	if container == "" {
		o.metrics.Request(string(api.KindPodLog), "get")
		pod, err := o.cs.CoreV1().Pods(o.ns).Get(ctx, o.pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if container, err = defaultContainer(pod); err != nil {
			return err
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
	return streamLog(ctx, o.cs, o.ns, o.pod, req, skip, emit)
}

// Unsubscribe implements Topic.
func (o *oneShotLog) Unsubscribe(*hub.Subscription) {}
