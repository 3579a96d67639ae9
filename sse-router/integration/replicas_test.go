package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/kube"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/server"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
	"github.com/dwp-sre/dwp-sre/sse-router/upstream"
)

// startReplica serves a router as startRouter does, reading the app summaries under
// prefix: replicas of one deployment share them.
func startReplica(t *testing.T, env *clustertest.Env, prefix string, tune func(*server.Config)) *router {
	t.Helper()
	cfg := routerConfig()
	if tune != nil {
		tune(&cfg)
	}
	clusters, err := kube.Load(kube.Options{Kubeconfig: env.Kubeconfig, QPS: 100, Burst: 200})
	if err != nil {
		t.Fatal(err)
	}
	r := &router{prefix: prefix, rdb: redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})}
	t.Cleanup(func() { r.rdb.Close() })
	apps := upstream.NewSummaryApps(r.rdb, prefix, map[string]string{clusters.Default().Name: env.ClusterName})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(cfg, server.Deps{Clusters: clusters, Apps: apps, Logger: log, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("router did not stop")
		}
	})
	r.URL, r.srv = "http://"+ln.Addr().String(), srv
	return r
}

// handover: a client reads path from router a until marker m1, goes away while feed
// writes m2, and reconnects to router b with its Last-Event-ID: it must get exactly what
// b sent a viewer it has had all along (the other viewers a replica has), after that id,
// up to m2: nothing lost, nothing twice, no full state again.
func handover(t *testing.T, a, b *router, path, tok string, feed func(m string), has func(ev sse.Event, m string) bool) {
	t.Helper()
	const timeout = 90 * time.Second
	upTo := func(m string) func(sse.Event) bool { return func(ev sse.Event) bool { return has(ev, m) } }
	ref := b.open(t, path, tok, "")
	c := a.open(t, path, tok, "")
	feed("m1")
	refSeen := collect(t, ref, timeout, "m1 on router b", upTo("m1"))
	seen := collect(t, c, timeout, "m1 on router a", upTo("m1"))
	last := seen[len(seen)-1].id
	c.close()
	feed("m2")
	refSeen = append(refSeen, collect(t, ref, timeout, "m2 on router b", upTo("m2"))...)

	c2 := b.open(t, path, tok, last)
	got := collect(t, c2, timeout, "m2 after resuming on router b", upTo("m2"))
	want := after(refSeen, last)
	if want == nil {
		t.Fatalf("router b never sent the id %s of router a: %v", last, refSeen)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("resumed on router b from %s:\n%v\nwant exactly what was missed:\n%v", last, got, want)
	}
	noRepeats(t, path, append(seen, got...))
	if got[0].typ == "snapshot" || got[0].typ == "relist" {
		t.Fatalf("resumed with a full %s instead of the missed events", got[0].typ)
	}
	t.Logf("%s: %d events missed, resumed on the other router", path, len(got))
}

func contains2(m string) func(ev sse.Event, m string) bool {
	return func(ev sse.Event, mk string) bool { return strings.Contains(ev.Data, m+mk) }
}

// workflow creates a one-step workflow of app web (its pod is named after it).
func workflow(t *testing.T, argo argoclient.Interface, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{
			Name:      "main",
			Container: &corev1.Container{Image: "registry.example/build:1", Command: []string{"make"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// Must show: two routers resume each other's streams, of every kind.
func TestReplicasResumeEachOther(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	argoNS := env.Namespace(t)
	prefix := "dwp-test-" + randomSuffix() + ":"
	tune := func(c *server.Config) { c.ArgoCDNamespace = argoNS }
	a := startReplica(t, env, prefix, tune)
	b := startReplica(t, env, prefix, tune)
	tok := env.Tokens["admin"]
	ctx := context.Background()
	cs := env.AdminClientset(t)
	argo, err := argoclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	pl := env.PodLog(t, ns, "web-1", "main")
	appendLines(t, pl, "old", 0, 3)
	runningPod(t, env, ns, "web-1", "web")
	env.WaitPodLogServed(t, ns, "web-1", "main")

	t.Run("pods", func(t *testing.T) {
		handover(t, a, b, "namespaces/"+ns+"/pods?app=web", tok, func(m string) {
			label(t, env, ns, "web-1", "away", m+"-0")
			label(t, env, ns, "web-1", "marker", m)
		}, contains2(`"marker":"`))
	})
	t.Run("pod_log", func(t *testing.T) {
		handover(t, a, b, "namespaces/"+ns+"/pods/web-1/log?container=main", tok, func(m string) {
			appendLines(t, pl, "line-"+m, 0, 5)
		}, contains2("line-"))
	})
	t.Run("events", func(t *testing.T) {
		handover(t, a, b, "namespaces/"+ns+"/events", tok, func(m string) {
			for i := range 2 {
				_, err := cs.CoreV1().Events(ns).Create(ctx, &corev1.Event{
					ObjectMeta:     metav1.ObjectMeta{GenerateName: "web-1-"},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: ns},
					Reason:         "Tested", Message: fmt.Sprintf("event %d of %s", i, m), Type: corev1.EventTypeNormal,
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			}
		}, func(ev sse.Event, m string) bool { return strings.Contains(ev.Data, "event 1 of "+m) })
	})

	wf := "build-" + randomSuffix()
	wpl := env.PodLog(t, ns, wf, "main")
	steps := appendLines(t, wpl, "step", 0, 6)
	workflow(t, argo, ns, wf)
	patchWorkflow := func(m string) {
		patch := fmt.Sprintf(`{"metadata":{"labels":{"marker":%q}}}`, m)
		if _, err := argo.ArgoprojV1alpha1().Workflows(ns).Patch(ctx, wf, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("workflows", func(t *testing.T) {
		handover(t, a, b, "namespaces/"+ns+"/workflows?app=web", tok, patchWorkflow, contains2(`"marker":"`))
	})
	t.Run("workflow", func(t *testing.T) {
		handover(t, a, b, "namespaces/"+ns+"/workflows/"+wf, tok, patchWorkflow, contains2(`"marker":"`))
	})
	t.Run("workflow_log", func(t *testing.T) {
		// The workflow's log: read two lines on a, the rest and the end on b.
		path := "namespaces/" + ns + "/workflows/" + wf + "/log"
		isEnd := func(ev sse.Event) bool { return ev.Type == "end" }
		ref := collect(t, b.open(t, path, tok, ""), 120*time.Second, "the whole log on router b", isEnd)
		c := a.open(t, path, tok, "")
		var seen []record
		c.until(t, 60*time.Second, "two lines on router a", func(ev sse.Event) bool {
			if ev.Type == "log" {
				seen = append(seen, record{ev.Type, ev.ID, ev.Data})
			}
			return len(seen) == 2
		})
		c.close()
		got := collect(t, b.open(t, path, tok, seen[1].id), 60*time.Second, "the rest on router b", isEnd)
		if want := after(ref, seen[1].id); !slices.Equal(got, want) || len(want) != len(steps)-2+1 {
			t.Fatalf("resumed from %s on router b:\n%v\nwant\n%v", seen[1].id, got, want)
		}
		noRepeats(t, "workflow log", append(seen, got...))
	})

	t.Run("application", func(t *testing.T) {
		apps := env.AdminDynamic(t).Resource(upstream.ApplicationsResource).Namespace(argoNS)
		if _, err := apps.Create(ctx, newApplication(argoNS, ns, "web"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		handover(t, a, b, "namespaces/"+ns+"/apps/web/application", tok, func(m string) {
			for _, h := range []string{"Progressing", "Degraded"} {
				setStatus(t, apps, ns+".web", func(s map[string]any) {
					s["health"] = map[string]any{"status": h, "message": "health " + h + " " + m}
				})
			}
		}, contains2("Degraded "))
	})

	t.Run("pod_metrics", func(t *testing.T) {
		// Metrics resume with the latest state: the one router b has.
		usage := func(cpu string) {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"kwok.x-k8s.io/usage-cpu":%q,"kwok.x-k8s.io/usage-memory":"64Mi"}}}`, cpu)
			if _, err := cs.CoreV1().Pods(ns).Patch(ctx, "web-1", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		cpuIs := func(want int64) func(sse.Event) bool {
			return func(ev sse.Event) bool {
				var u struct {
					Pods []struct {
						CPUMillis int64 `json:"cpuMillis"`
					} `json:"pods"`
				}
				return ev.Type == "metrics" && json.Unmarshal([]byte(ev.Data), &u) == nil && len(u.Pods) == 1 && u.Pods[0].CPUMillis == want
			}
		}
		path := "namespaces/" + ns + "/metrics/pods?app=web"
		usage("100m")
		ref := b.open(t, path, tok, "")
		c := a.open(t, path, tok, "")
		seen := collect(t, c, 150*time.Second, "100m on router a", cpuIs(100))
		c.close()
		usage("300m")
		latest := collect(t, ref, 150*time.Second, "300m on router b", cpuIs(300))
		c2 := b.open(t, path, tok, seen[len(seen)-1].id)
		if ev := c2.next(t, 30*time.Second); ev.ID != latest[len(latest)-1].id || ev.Data != latest[len(latest)-1].data {
			t.Fatalf("resumed on router b with %+v, want its latest state %v", ev, latest[len(latest)-1])
		}
	})

	t.Run("apps", func(t *testing.T) {
		store := summarystore.New(a.rdb, prefix)
		key := store.SummariesKey(env.ClusterName, ns)
		t.Cleanup(func() { a.rdb.Del(context.Background(), key) })
		put := func(app, state string) {
			s := events.AppSummary{Cluster: env.ClusterName, Namespace: ns, App: app, Run: events.RunStatus{State: state, Pods: 1}}
			body, _ := json.Marshal(s)
			if err := a.rdb.HSet(ctx, key, app, body).Err(); err != nil {
				t.Fatal(err)
			}
			ch, _ := json.Marshal(events.SummaryChange{Cluster: env.ClusterName, Namespace: ns, App: app, Summary: &s})
			if err := a.rdb.Publish(ctx, store.Channel(), ch).Err(); err != nil {
				t.Fatal(err)
			}
		}
		put("web", events.RunRunning)
		path := "namespaces/" + ns + "/apps"
		ref := b.open(t, path, tok, "")
		c := a.open(t, path, tok, "")
		isDB := func(state string) func(sse.Event) bool {
			return func(ev sse.Event) bool {
				return strings.Contains(ev.Data, `"app":"db"`) && strings.Contains(ev.Data, state)
			}
		}
		put("db", events.RunDegraded)
		seen := collect(t, c, 30*time.Second, "db on router a", isDB(events.RunDegraded))
		c.close()
		put("db", events.RunRunning)
		collect(t, ref, 30*time.Second, "db's change on router b", isDB(events.RunRunning))
		// App summary ids are per router (their sequence): on another router the stream
		// resumes with the namespace's state, as it is now.
		c2 := b.open(t, path, tok, seen[len(seen)-1].id)
		ev := c2.next(t, 30*time.Second)
		if ev.Type != "snapshot" || !strings.Contains(ev.Data, `"app":"web"`) || !isDB(events.RunRunning)(ev) || strings.Contains(ev.Data, events.RunDegraded) {
			t.Fatalf("resumed on router b with %+v, want the state as it is", ev)
		}
	})
}
