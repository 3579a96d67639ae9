package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// historyEvent is what the test reads of a `history` event.
type historyEvent struct {
	Type      string    `json:"type"`
	Available bool      `json:"available"`
	Message   string    `json:"message"`
	End       time.Time `json:"end"`
	Pods      []struct {
		Name       string `json:"name"`
		Containers []struct {
			Name   string `json:"name"`
			Points []struct {
				Time        time.Time `json:"time"`
				CPUMillis   *int64    `json:"cpuMillis"`
				MemoryBytes *int64    `json:"memoryBytes"`
			} `json:"points"`
		} `json:"containers"`
	} `json:"pods"`
}

// promInstant asks the plane's Prometheus for an instant query's first value at a time.
func promInstant(ctx context.Context, base, query string, at time.Time) (float64, bool, error) {
	q := url.Values{"query": {query}, "time": {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?"+q.Encode(), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false, err
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		return 0, false, fmt.Errorf("%s: %s", resp.Status, b)
	}
	if len(r.Data.Result) == 0 {
		return 0, false, nil
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

// A pod metrics stream opens with the last hour of the pods' usage from the plane's
// Prometheus (kwok's kubelet resource metrics), read with the router's own access for a
// user who may only view the namespace, then goes live; a viewer resuming where it was
// is not sent the history again.
func TestPodMetricsHistory(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	if env.PrometheusURL == "" {
		t.Fatal("the local control plane runs no Prometheus: install Debian's prometheus (sandbox/scripts/services.sh does)")
	}
	ns := env.Namespace(t)
	const cpu, memory = "120m", "96Mi"
	_, err := env.AdminClientset(t).CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{
			"kwok.x-k8s.io/usage-cpu": cpu, "kwok.x-k8s.io/usage-memory": memory,
		}},
		Spec: corev1.PodSpec{NodeName: env.NodeName, Containers: []corev1.Container{{Name: "main", Image: "registry.example/web:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// kwok's CPU counter starts at the first scrape, so the rate settles once its 30 s
	// window holds only samples of the running pod. The history's range query steps
	// 15 s from an hour ago, so its last point can be up to a step old: the rate must be
	// there a step ago too.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	query := fmt.Sprintf(`rate(container_cpu_usage_seconds_total{namespace=%q,pod="web-1"}[30s])`, ns)
	begin := time.Now()
	for {
		v, ok, err := promInstant(ctx, env.PrometheusURL, query, time.Now().Add(-15*time.Second))
		if err == nil && ok && math.Abs(v-0.12) < 0.006 {
			t.Logf("prometheus has the pod's CPU rate (%.4f cores) after %s", v, time.Since(begin).Round(time.Second))
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("prometheus has no settled CPU rate for the pod: last %v, %v, %v", v, ok, err)
		case <-time.After(2 * time.Second):
		}
	}

	env.Grant(t, ns, "carol", "view")
	tok := env.Tokens["carol"]
	r := startRouter(t, env, func(c *server.Config) { c.PrometheusURL = env.PrometheusURL })
	path := "namespaces/" + ns + "/metrics/pods?app=web"

	c := r.open(t, path, tok, "")
	first := c.next(t, 20*time.Second)
	if first.Type != "history" {
		t.Fatalf("first event %s %s, want history", first.Type, first.Data)
	}
	var h historyEvent
	if err := json.Unmarshal([]byte(first.Data), &h); err != nil {
		t.Fatal(err)
	}
	if !h.Available || len(h.Pods) != 1 || h.Pods[0].Name != "web-1" || len(h.Pods[0].Containers) != 1 || h.Pods[0].Containers[0].Name != "main" {
		t.Fatalf("history %s: want web-1's container main", first.Data)
	}
	points := h.Pods[0].Containers[0].Points
	var lastCPU int64 = -1
	for _, p := range points {
		if p.MemoryBytes != nil && *p.MemoryBytes != 96<<20 {
			t.Errorf("memory %d at %s, want %d (the usage-memory annotation)", *p.MemoryBytes, p.Time, 96<<20)
		}
		if p.CPUMillis != nil {
			lastCPU = *p.CPUMillis
		}
	}
	if lastCPU < 114 || lastCPU > 126 {
		t.Errorf("latest CPU in the history %dm, want about 120m (the usage-cpu annotation); %d points", lastCPU, len(points))
	}
	if first.ID == "" {
		t.Error("the history has no id")
	}
	t.Logf("history: %d points up to %s", len(points), h.End)

	// A second viewer shares the reading.
	second := r.open(t, path, tok, "")
	if ev := second.next(t, 20*time.Second); ev.Type != "history" {
		t.Fatalf("second viewer's first event %s %s, want history", ev.Type, ev.Data)
	}
	if n := r.metric(t, `dwp_sse_upstream_requests_total{kind="pod_metrics",verb="history"}`); n != 1 {
		t.Errorf("history read %v times for viewers of one namespace, want once", n)
	}

	// Then the live usage, from metrics.k8s.io.
	var liveID string
	c.until(t, 150*time.Second, "the live usage", func(ev sse.Event) bool {
		if ev.Type == "history" {
			t.Fatalf("a second history: %s", ev.Data)
		}
		if ev.Type != "metrics" {
			return false
		}
		var u struct {
			Time time.Time `json:"time"`
			Pods []struct {
				Name        string `json:"name"`
				CPUMillis   int64  `json:"cpuMillis"`
				MemoryBytes int64  `json:"memoryBytes"`
			} `json:"pods"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &u); err != nil {
			t.Fatal(err)
		}
		if u.Time.Before(h.End) {
			t.Errorf("live usage at %s comes before the history's end %s", u.Time, h.End)
		}
		liveID = ev.ID
		return len(u.Pods) == 1 && u.Pods[0].CPUMillis == 120 && u.Pods[0].MemoryBytes == 96<<20
	})

	// A viewer resuming from the live usage is not sent the history again.
	resumed := r.open(t, path, tok, liveID)
	deadline := time.After(3 * time.Second)
	for waiting := true; waiting; {
		select {
		case ev, ok := <-resumed.events:
			if ok && ev.Type == "history" {
				t.Fatalf("a viewer resuming from %s got the history again", liveID)
			}
		case <-deadline:
			waiting = false
		}
	}
}
