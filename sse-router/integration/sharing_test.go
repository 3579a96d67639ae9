package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

type logEvent struct {
	Type string `json:"type"`
	Time string `json:"time"`
	Pod  string `json:"pod"`
	Line string `json:"line"`
}

func decodeLog(t *testing.T, ev sse.Event) logEvent {
	t.Helper()
	var l logEvent
	if err := json.Unmarshal([]byte(ev.Data), &l); err != nil {
		t.Fatalf("log event %q: %v", ev.Data, err)
	}
	return l
}

// Must show: 50 clients on one pod log → exactly one upstream log follow; 50 clients on
// one namespace's pods → one upstream watch. Read from the router's Prometheus metrics.
func TestFiftyClientsShareOneUpstream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "before", 0, 3)
	runningPod(t, env, ns, "web-1", "web")
	tok := env.Tokens["admin"]
	const n = 50

	t.Run("pod log", func(t *testing.T) {
		clients := make([]*client, n)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() { clients[i] = r.open(t, "namespaces/"+ns+"/pods/web-1/log?container=main", tok, "") })
		}
		wg.Wait()
		want := appendLines(t, pl, "shared", 0, 5)
		for i, c := range clients {
			var got []string
			c.until(t, 30*time.Second, "the appended lines", func(ev sse.Event) bool {
				if ev.Type == "log" {
					got = append(got, decodeLog(t, ev).Line)
				}
				return len(got) == len(want)+3
			})
			if fmt.Sprint(got[3:]) != fmt.Sprint(want) || got[0] != "before 0000" {
				t.Fatalf("client %d got %q", i, got)
			}
		}
		if got := r.metric(t, `dwp_sse_upstream_requests_total{kind="pod_log",verb="follow"}`); got != 1 {
			t.Fatalf("%d clients made %v upstream log follows, want exactly 1", n, got)
		}
		if got := r.metric(t, `dwp_sse_upstreams{kind="pod_log"}`); got != 1 {
			t.Fatalf("open upstream log follows = %v, want 1", got)
		}
		if got := r.metric(t, `dwp_sse_clients{kind="pod_log"}`); got != n {
			t.Fatalf("clients = %v, want %d", got, n)
		}
		t.Logf("%d clients, %v upstream follow, %v log fetches (ring fill)", n,
			r.metric(t, `dwp_sse_upstream_requests_total{kind="pod_log",verb="follow"}`),
			r.metric(t, `dwp_sse_upstream_requests_total{kind="pod_log",verb="fetch"}`))
	})

	t.Run("namespace pods", func(t *testing.T) {
		clients := make([]*client, n)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() { clients[i] = r.open(t, "namespaces/"+ns+"/pods", tok, "") })
		}
		wg.Wait()
		for _, c := range clients {
			if ev := c.next(t, 30*time.Second); ev.Type != "snapshot" {
				t.Fatalf("first event %+v", ev)
			}
		}
		label(t, env, ns, "web-1", "shared", "yes")
		for i, c := range clients {
			c.until(t, 30*time.Second, "the pod change", func(ev sse.Event) bool {
				return ev.Type == "modified" && json.Valid([]byte(ev.Data)) && contains(ev.Data, `"shared":"yes"`)
			})
			_ = i
		}
		if got := r.metric(t, `dwp_sse_upstream_requests_total{kind="pods",verb="watch"}`); got != 1 {
			t.Fatalf("%d clients made %v upstream watches, want exactly 1", n, got)
		}
		if got := r.metric(t, `dwp_sse_upstream_requests_total{kind="pods",verb="list"}`); got != 1 {
			t.Fatalf("%d clients made %v upstream lists, want exactly 1", n, got)
		}
		if got := r.metric(t, `dwp_sse_upstreams{kind="pods"}`); got != 1 {
			t.Fatalf("open upstream watches = %v, want 1", got)
		}
	})
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
