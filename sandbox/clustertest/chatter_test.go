package clustertest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// A pod annotated dwp.io/log-every gets a log from the plane, served by kwok through the
// API server's pods/log, that keeps growing.
func TestAnnotatedPodKeepsLogging(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	runPod(t, cs, ns, "chatty", map[string]string{"dwp.io/log-every": "200ms"})

	requests := func(ctx context.Context) (int, error) {
		b, err := cs.CoreV1().Pods(ns).GetLogs("chatty", &corev1.PodLogOptions{Container: "main"}).DoRaw(ctx)
		if err != nil {
			return 0, err
		}
		return strings.Count(string(b), " method="), nil
	}
	var first int
	waitUntil(t, 30*time.Second, "request lines in the pod's log", func(ctx context.Context) (bool, error) {
		n, err := requests(ctx)
		first = n
		return err == nil && n >= 2, fmt.Errorf("%d lines: %v", n, err)
	})
	start := time.Now()
	waitUntil(t, 10*time.Second, "more lines later", func(ctx context.Context) (bool, error) {
		n, err := requests(ctx)
		return err == nil && n >= first+5, fmt.Errorf("%d lines, had %d: %v", n, first, err)
	})
	t.Logf("5 more lines served within %s", time.Since(start).Round(time.Millisecond))
}

// A pod annotated dwp.io/crash-after goes to CrashLoopBackOff, not ready, with restarts
// counted, and kwok leaves it so.
func TestAnnotatedPodCrashLoops(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	cs := env.AdminClientset(t)
	runPod(t, cs, ns, "crashy", map[string]string{"dwp.io/crash-after": "1s"})
	waitUntil(t, 30*time.Second, "CrashLoopBackOff", func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "crashy", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return false, fmt.Errorf("no container status")
		}
		s := p.Status.ContainerStatuses[0]
		ok := s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" && s.RestartCount == 1 && !podReady(p)
		return ok, fmt.Errorf("state %+v, restarts %d", s.State, s.RestartCount)
	})
	// Still so a moment later: no kwok stage puts it back to Running meanwhile.
	time.Sleep(2 * time.Second)
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), "crashy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.Status.ContainerStatuses[0]; s.State.Waiting == nil || p.Status.Phase != corev1.PodRunning {
		t.Errorf("after 2 s: phase %s, state %+v", p.Status.Phase, s.State)
	}
	b, err := cs.CoreV1().Pods(ns).GetLogs("crashy", &corev1.PodLogOptions{Container: "main"}).DoRaw(context.Background())
	if err != nil || !strings.Contains(string(b), "level=fatal") {
		t.Errorf("log %q (%v) lacks the fatal line", b, err)
	}
}
