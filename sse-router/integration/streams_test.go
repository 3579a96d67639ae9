package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	argoclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sse-router/sse"
)

// A workflow's status streams (its app's list, and itself) and its logs: every pod's
// lines merged, then the end once it finished.
func TestWorkflowStreams(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	tok := env.Tokens["admin"]
	argo, err := argoclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	name := "build-" + randomSuffix()

	list := r.open(t, "namespaces/"+ns+"/workflows?app=web", tok, "")
	if ev := list.next(t, 10*time.Second); ev.Type != "snapshot" {
		t.Fatalf("list starts with %+v", ev)
	}
	// A one-step workflow's pod is named after the workflow; kwok serves its log.
	pl := env.PodLog(t, ns, name, "main")
	lines := appendLines(t, pl, "step", 0, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = argo.ArgoprojV1alpha1().Workflows(ns).Create(ctx, &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{
			Name:      "main",
			Container: &corev1.Container{Image: "registry.example/build:1", Command: []string{"make"}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	one := r.open(t, "namespaces/"+ns+"/workflows/"+name, tok, "")
	logs := r.open(t, "namespaces/"+ns+"/workflows/"+name+"/log", tok, "")

	var got []string
	var end sse.Event
	logs.until(t, 90*time.Second, "the workflow's log and its end", func(ev sse.Event) bool {
		switch ev.Type {
		case "log":
			l := decodeLog(t, ev)
			if l.Pod != name {
				t.Errorf("line from pod %q, want %q", l.Pod, name)
			}
			got = append(got, l.Line)
		case "end":
			end = ev
			return true
		}
		return false
	})
	if strings.Join(got, ",") != strings.Join(lines, ",") {
		t.Fatalf("workflow log %q, want %q", got, lines)
	}
	if end.ID != "end" || !strings.Contains(end.Data, `"reason":"workflow-Succeeded"`) {
		t.Fatalf("end event %+v", end)
	}
	// A browser reconnecting after the end is told to stop (204).
	if _, status := r.tryOpen(t, "namespaces/"+ns+"/workflows/"+name+"/log", tok, end.ID); status != http.StatusNoContent {
		t.Fatalf("reconnect after the end: %d, want 204", status)
	}

	var withNodes bool
	one.until(t, 60*time.Second, "the workflow's success", func(ev sse.Event) bool {
		withNodes = withNodes || strings.Contains(ev.Data, `"nodes":{`)
		return strings.Contains(ev.Data, `"phase":"Succeeded"`)
	})
	if !withNodes {
		t.Error("the one-workflow stream should carry node statuses")
	}
	list.until(t, 60*time.Second, "the workflow's success in its app's list", func(ev sse.Event) bool {
		if strings.Contains(ev.Data, `"nodes":{`) || strings.Contains(ev.Data, "storedTemplates") {
			t.Fatalf("the list stream carries node statuses: %.300s", ev.Data)
		}
		return strings.Contains(ev.Data, name) && strings.Contains(ev.Data, `"phase":"Succeeded"`)
	})
}

func TestEventsStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	c := r.open(t, "namespaces/"+ns+"/events?kind=Pod&name=web-1", env.Tokens["admin"], "")
	if ev := c.next(t, 10*time.Second); ev.Type != "snapshot" {
		t.Fatalf("first %+v", ev)
	}
	cs := env.AdminClientset(t)
	for _, pod := range []string{"web-2", "web-1"} {
		_, err := cs.CoreV1().Events(ns).Create(context.Background(), &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{GenerateName: pod + "-"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod, Namespace: ns},
			Reason:         "Tested", Message: "about " + pod, Type: corev1.EventTypeNormal,
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	ev := c.next(t, 20*time.Second)
	if ev.Type != "added" || !strings.Contains(ev.Data, "about web-1") {
		t.Fatalf("event stream got %+v, want only web-1's event", ev)
	}
}

// Pod metrics: one poll per namespace serves every app watched in it.
func TestPodMetricsStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	tok := env.Tokens["admin"]
	cs := env.AdminClientset(t)
	for _, p := range []struct{ name, app, cpu string }{{"web-1", "web", "100m"}, {"db-1", "db", "250m"}} {
		_, err := cs.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Labels: map[string]string{"app": p.app}, Annotations: map[string]string{
				"kwok.x-k8s.io/usage-cpu": p.cpu, "kwok.x-k8s.io/usage-memory": "64Mi",
			}},
			Spec: corev1.PodSpec{NodeName: env.NodeName, Containers: []corev1.Container{{Name: "main", Image: "registry.example/x:1"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	web := r.open(t, "namespaces/"+ns+"/metrics/pods?app=web", tok, "")
	db := r.open(t, "namespaces/"+ns+"/metrics/pods?app=db", tok, "")
	type usage struct {
		Pods []struct {
			Name        string `json:"name"`
			CPUMillis   int64  `json:"cpuMillis"`
			MemoryBytes int64  `json:"memoryBytes"`
		} `json:"pods"`
	}
	waitUsage := func(c *client, pod string, cpu int64) {
		c.until(t, 150*time.Second, pod+"'s usage", func(ev sse.Event) bool {
			if ev.Type != "metrics" {
				return false
			}
			var u usage
			if err := json.Unmarshal([]byte(ev.Data), &u); err != nil {
				t.Fatal(err)
			}
			for _, p := range u.Pods {
				if p.Name != pod {
					t.Fatalf("%s's stream shows pod %s", pod, p.Name)
				}
			}
			return len(u.Pods) == 1 && u.Pods[0].CPUMillis == cpu && u.Pods[0].MemoryBytes == 64<<20
		})
	}
	waitUsage(web, "web-1", 100)
	waitUsage(db, "db-1", 250)
	if n := r.metric(t, `dwp_sse_upstreams{kind="pod_metrics"}`); n != 1 {
		t.Fatalf("metrics pollers = %v for two apps of one namespace, want 1", n)
	}
	if n := r.metric(t, `dwp_sse_topics{kind="pod_metrics_app"}`); n != 2 {
		t.Fatalf("app views = %v, want 2", n)
	}
}

// App summaries come from the summary store in Redis: a snapshot of the namespace, then
// each change published on its channel.
func TestAppsStream(t *testing.T) {
	t.Parallel()
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	r := startRouter(t, env, nil)
	ctx := context.Background()
	store := summarystore.New(r.rdb, r.prefix)
	key := store.SummariesKey(env.ClusterName, ns)
	t.Cleanup(func() { r.rdb.Del(context.Background(), key) })
	put := func(app, state string) {
		s := events.AppSummary{Cluster: env.ClusterName, Namespace: ns, App: app, Run: events.RunStatus{State: state, Pods: 1}}
		b, _ := json.Marshal(s)
		if err := r.rdb.HSet(ctx, key, app, b).Err(); err != nil {
			t.Fatal(err)
		}
		c, _ := json.Marshal(events.SummaryChange{Cluster: env.ClusterName, Namespace: ns, App: app, Summary: &s})
		if err := r.rdb.Publish(ctx, store.Channel(), c).Err(); err != nil {
			t.Fatal(err)
		}
	}
	put("web", events.RunRunning)
	c := r.open(t, "namespaces/"+ns+"/apps", env.Tokens["admin"], "")
	if ev := c.next(t, 10*time.Second); ev.Type != "snapshot" || !strings.Contains(ev.Data, `"app":"web"`) || !strings.Contains(ev.Data, `"Running"`) {
		t.Fatalf("first %+v", ev)
	}
	put("db", events.RunDegraded)
	if ev := c.next(t, 10*time.Second); ev.Type != "app" || !strings.Contains(ev.Data, `"app":"db"`) || !strings.Contains(ev.Data, `"Degraded"`) {
		t.Fatalf("change %+v", ev)
	}
	// Another namespace's change is not this stream's.
	other, _ := json.Marshal(events.SummaryChange{Cluster: env.ClusterName, Namespace: "elsewhere", App: "x"})
	r.rdb.Publish(ctx, store.Channel(), other)
	gone, _ := json.Marshal(events.SummaryChange{Cluster: env.ClusterName, Namespace: ns, App: "web"})
	r.rdb.HDel(ctx, key, "web")
	r.rdb.Publish(ctx, store.Channel(), gone)
	if ev := c.next(t, 10*time.Second); ev.Type != "deleted" || !strings.Contains(ev.Data, `"app":"web"`) {
		t.Fatalf("deletion %+v", ev)
	}
}
