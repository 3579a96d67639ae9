package integration

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

// podView is what a portal page keeps from a pod stream: the pods by name, from
// snapshots, relists and changes.
type podView struct {
	pods map[string]corev1.Pod
	// relists counts full states received after the first.
	relists int
}

func (v *podView) apply(t *testing.T, data string) {
	t.Helper()
	var head struct {
		Type   string          `json:"type"`
		Object json.RawMessage `json:"object"`
		Items  []corev1.Pod    `json:"items"`
	}
	if err := json.Unmarshal([]byte(data), &head); err != nil {
		t.Fatalf("pod event %.200q: %v", data, err)
	}
	switch head.Type {
	case "snapshot", "relist":
		if v.pods != nil {
			v.relists++
		}
		v.pods = map[string]corev1.Pod{}
		for _, p := range head.Items {
			v.pods[p.Name] = p
		}
	case "ADDED", "MODIFIED", "DELETED":
		var p corev1.Pod
		if err := json.Unmarshal(head.Object, &p); err != nil {
			t.Fatal(err)
		}
		if head.Type == "DELETED" {
			delete(v.pods, p.Name)
		} else {
			v.pods[p.Name] = p
		}
	}
}

func (v *podView) has(name, key, value string) bool {
	p, ok := v.pods[name]
	return ok && (key == "" || p.Labels[key] == value)
}

// Must show: the API server restarted under open streams → every stream resumes with no
// lost change. On a private control plane, since the restart disturbs everyone on it.
func TestAPIServerRestartUnderOpenStreams(t *testing.T) {
	env := clustertest.Private(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	tok := env.Tokens["admin"]
	pl := env.PodLog(t, ns, "web-1", "main")
	runningPod(t, env, ns, "web-1", "web")
	env.WaitPodLogServed(t, ns, "web-1", "main")

	podsPath := "namespaces/" + ns + "/pods?app=web"
	logPath := "namespaces/" + ns + "/pods/web-1/log?container=main&tailLines=0"
	pods := r.open(t, podsPath, tok, "")
	logs := r.open(t, logPath, tok, "")
	mux := r.open(t, "mux?"+url.Values{"subscribe": {"pods:" + podsPath, "log:" + logPath}}.Encode(), tok, "")

	// Each reader keeps its view as events come.
	type reader struct {
		mu    sync.Mutex
		view  podView
		lines []string
		ids   []string
		// joined: a line written after the stream was opened came through.
		joined bool
	}
	readers := map[string]*reader{"pods": {}, "logs": {}, "mux": {}}
	var wg sync.WaitGroup
	consume := func(name string, c *client) {
		rd := readers[name]
		wg.Go(func() {
			for ev := range c.events {
				if ev.IsComment {
					continue
				}
				var p struct{ Type string }
				_ = json.Unmarshal([]byte(ev.Data), &p)
				isLog := ev.Type == "log" && p.Type == "log"
				isPod := (name == "pods" || ev.Type == "pods") && p.Type != "error" && ev.Type != "session"
				rd.mu.Lock()
				switch {
				case isLog:
					var l logEvent
					_ = json.Unmarshal([]byte(ev.Data), &l)
					if strings.HasPrefix(l.Line, joinPrefix) {
						rd.joined = true
						break
					}
					rd.lines = append(rd.lines, l.Line)
					rd.ids = append(rd.ids, ev.ID)
				case isPod:
					rd.view.apply(t, ev.Data)
				}
				rd.mu.Unlock()
			}
		})
	}
	consume("pods", pods)
	consume("logs", logs)
	consume("mux", mux)
	t.Cleanup(func() { pods.close(); logs.close(); mux.close(); wg.Wait() })

	waitAll := func(what string, timeout time.Duration, ok func(rd *reader) bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			all := true
			for _, name := range []string{"pods", "logs", "mux"} {
				rd := readers[name]
				rd.mu.Lock()
				if !ok(rd) {
					all = false
				}
				rd.mu.Unlock()
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				for name, rd := range readers {
					rd.mu.Lock()
					t.Logf("%s: %d lines, pods %v", name, len(rd.lines), slices.Collect(func(yield func(string) bool) {
						for n, p := range rd.view.pods {
							if !yield(n + fmt.Sprint(p.Labels)) {
								return
							}
						}
					}))
					rd.mu.Unlock()
				}
				t.Fatalf("%s: not within %s", what, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	hasLines := func(want []string) func(rd *reader) bool {
		return func(rd *reader) bool {
			return containsRun(rd.lines, want)
		}
	}

	// The log streams ask for tailLines=0: the lines written after they joined. Until the
	// router has joined them to the shared follow, a line written counts as old; so
	// write markers until every stream has shown one.
	for i := 0; ; i++ {
		appendLines(t, pl, joinPrefix, i, 1)
		joined := true
		for _, rd := range readers {
			rd.mu.Lock()
			joined = joined && (rd == readers["pods"] || rd.joined)
			rd.mu.Unlock()
		}
		if joined {
			break
		}
		if i == 300 {
			t.Fatal("the log streams showed no new line within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	label(t, env, ns, "web-1", "marker", "before")
	before := appendLines(t, pl, "before", 0, 3)
	waitAll("changes before the restart", 30*time.Second, func(rd *reader) bool {
		if rd == readers["logs"] {
			return hasLines(before)(rd)
		}
		if rd == readers["pods"] {
			return rd.view.has("web-1", "marker", "before")
		}
		return rd.view.has("web-1", "marker", "before") && hasLines(before)(rd)
	})

	// Lines keep coming while the API server is down: the kubelet (kwok) has them, the
	// router must fetch them when it can.
	stop := make(chan struct{})
	var during []string
	var dmu sync.Mutex
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
			l := appendLines(t, pl, "during", i, 1)
			dmu.Lock()
			during = append(during, l...)
			dmu.Unlock()
		}
	})
	start := time.Now()
	env.RestartAPIServer(t)
	close(stop)
	t.Logf("API server restarted in %s", time.Since(start).Round(time.Millisecond))

	label(t, env, ns, "web-1", "marker", "after")
	runningPod(t, env, ns, "web-2", "web")
	after := appendLines(t, pl, "after", 0, 3)
	dmu.Lock()
	all := append(append(slices.Clone(before), during...), after...)
	dmu.Unlock()

	waitAll("every change after the restart", 60*time.Second, func(rd *reader) bool {
		linesOK := slices.Equal(rd.lines, all)
		podsOK := rd.view.has("web-1", "marker", "after") && rd.view.has("web-2", "", "")
		switch rd {
		case readers["logs"]:
			return linesOK
		case readers["pods"]:
			return podsOK
		}
		return linesOK && podsOK
	})
	for name, rd := range readers {
		rd.mu.Lock()
		if name != "pods" && !slices.Equal(rd.lines, all) {
			t.Errorf("%s: lines %q, want exactly %q", name, rd.lines, all)
		}
		for i := 1; i < len(rd.ids); i++ {
			if rd.ids[i] == rd.ids[i-1] {
				t.Errorf("%s: id %s twice", name, rd.ids[i])
			}
		}
		t.Logf("%s: %d lines (%d written while the API server was down), full states after the first: %d", name, len(rd.lines), len(during), rd.view.relists)
		rd.mu.Unlock()
	}
	if n := r.metric(t, `dwp_sse_upstreams{kind="pods"}`); n != 1 {
		t.Errorf("open pod watches after the restart = %v, want 1", n)
	}
	if n := r.metric(t, `dwp_sse_upstreams{kind="pod_log"}`); n != 1 {
		t.Errorf("open log follows after the restart = %v, want 1", n)
	}
}

// joinPrefix starts the lines written to learn that the log streams have joined.
const joinPrefix = "joined"

// containsRun reports whether want appears in order, contiguously, in lines.
func containsRun(lines, want []string) bool {
	for i := 0; i+len(want) <= len(lines); i++ {
		if slices.Equal(lines[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
