package main

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	wfclient "github.com/argoproj/argo-workflows/v3/pkg/client/clientset/versioned"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dwp-sre/dwp-sre/internal/events"
	"github.com/dwp-sre/dwp-sre/internal/summarystore"
	"github.com/dwp-sre/dwp-sre/internal/summarystore/redistest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

func deployment(name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "registry.example/" + name}}},
			},
		},
	}
}

func submit(t *testing.T, argo wfclient.Interface, ns, app, task string) *wfv1.Workflow {
	t.Helper()
	wf, err := argo.ArgoprojV1alpha1().Workflows(ns).Create(context.Background(), &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{GenerateName: app + "-" + task + "-", Labels: map[string]string{"app": app, "dwp.io/task": task}},
		Spec:       wfv1.WorkflowSpec{WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "ci"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("submit a workflow: %v", err)
	}
	return wf
}

func scale(t *testing.T, kube kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	ctx := context.Background()
	s, err := kube.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = replicas
	if _, err := kube.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestSummariesFollowTheCluster runs the watcher binary against the local control plane,
// sending to the real function (every family), on a private Redis, through the "must
// show" list of the app summaries: three apps with Deployments and workflows run by
// Argo's controller, each summary right within 2 s of a change; Redis emptied and
// rebuilt; the watcher killed and restarted; an app deleted; the recorded events
// shuffled and tripled giving the same keyspace; bad events refused with Redis untouched;
// the app list API with real users' rights.
func TestSummariesFollowTheCluster(t *testing.T) {
	env := clustertest.Get(t)
	ns := env.Namespace(t)
	kube := env.AdminClientset(t)
	argo, err := wfclient.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cluster := "e2e-" + ns[len(ns)-6:]
	redisSrv := redistest.Start(t)
	rdb := redisSrv.Client(t, 0)
	store := summarystore.New(rdb, "dwp:")

	fn := startFunction(t, map[string]string{
		"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": redisSrv.Addr, "DWP_CLUSTER_NAME": cluster,
	})
	watcherEnv := []string{
		"K_SINK=" + fn.URL + "/events", "DWP_KUBECONFIG=" + env.Kubeconfig, "DWP_CLUSTER_NAME=" + cluster,
		"DWP_NAMESPACES=" + ns, "DWP_RESYNC_INTERVAL=3s", "DWP_LEASE_NAMESPACE=" + ns,
		"DWP_LEASE_DURATION=4s", "DWP_LEASE_RENEW_DEADLINE=3s", "DWP_LEASE_RETRY_PERIOD=500ms", "DWP_LOG_LEVEL=debug",
	}
	bin := watcherBinary(t)
	w := startWatcher(t, bin, watcherEnv)
	o := startOracle(t, ctx, kube, argo, cluster, ns)
	samples := startSampler(ctx, store, cluster, ns)

	_, err = argo.ArgoprojV1alpha1().WorkflowTemplates(ns).Create(ctx, &wfv1.WorkflowTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "ci"},
		Spec: wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{
			{Name: "main", Steps: []wfv1.ParallelSteps{{Steps: []wfv1.WorkflowStep{{Name: "build", Template: "step"}}}}},
			{Name: "step", Container: &corev1.Container{Image: "busybox", Command: []string{"true"}}},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// Phase 1: three apps come up and run CI; then changes. Every summary must be right
	// within 2 s of the change that made it.
	phase1 := time.Now()
	for name, n := range map[string]int32{"web": 2, "api": 1, "worker": 3} {
		if _, err := kube.AppsV1().Deployments(ns).Create(ctx, deployment(name, n), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	submit(t, argo, ns, "web", "build")
	apiBuild := submit(t, argo, ns, "api", "build")
	waitStable(t, o, 3*time.Second, 90*time.Second)
	scale(t, kube, ns, "web", 3)
	submit(t, argo, ns, "web", "deploy")
	if err := argo.ArgoprojV1alpha1().Workflows(ns).Delete(ctx, apiBuild.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitStable(t, o, 3*time.Second, 90*time.Second)
	checked, slowest := checkWithin(t, o, samples, phase1, time.Now(), 2*time.Second)
	t.Logf("phase 1: %d summaries held 2 s or more; every one was in Redis within 2 s (slowest %s)", checked, slowest.Round(time.Millisecond))
	if checked < 3 {
		t.Fatalf("only %d summaries checked", checked)
	}
	want := o.expected()
	if len(want) != 3 || !strings.Contains(want["web"], "pods=3 ready=3") || !strings.Contains(want["web"], "/deploy") || strings.Contains(want["api"], "cicd=") {
		t.Fatalf("unexpected cluster state: %s", render(want))
	}
	if code, body := w.get("/readyz"); code != http.StatusOK {
		t.Errorf("watcher /readyz: %d %s", code, body)
	}
	if _, metrics := w.get("/metrics"); !strings.Contains(metrics, `dwp_watcher_events_sent_total{type="io.dwp.pod.changed.v1"}`) || !strings.Contains(metrics, "dwp_watcher_leader 1") {
		t.Errorf("watcher metrics lack sent events or leadership:\n%.2000s", metrics)
	}

	// Phase 2: Redis loses everything; the next full-state round rebuilds it.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	took := waitConverged(t, "after FLUSHALL", o, store, cluster, ns, 30*time.Second)
	t.Logf("phase 2: summaries rebuilt %s after FLUSHALL (resync interval 3s)", took.Round(time.Millisecond))

	// Phase 3: the watcher is killed; the cluster changes meanwhile (an app deleted, one
	// scaled, a workflow submitted); a new watcher converges.
	w.stop(syscall.SIGKILL)
	if err := kube.AppsV1().Deployments(ns).Delete(ctx, "worker", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	scale(t, kube, ns, "api", 2)
	submit(t, argo, ns, "api", "build")
	waitGone(t, o, "worker", 60*time.Second)
	waitStable(t, o, time.Second, 90*time.Second)
	restarted := time.Now()
	w = startWatcher(t, bin, watcherEnv)
	took = waitConverged(t, "after the watcher's restart", o, store, cluster, ns, 60*time.Second)
	t.Logf("phase 3: converged %s after restarting the SIGKILLed watcher (its lease of 4s had to expire)", took.Round(time.Millisecond))
	_ = restarted

	// Phase 4: an app is deleted while the watcher runs: its summary goes within 2 s.
	phase4 := time.Now()
	if err := kube.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := argo.ArgoprojV1alpha1().Workflows(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, o, "web", 60*time.Second)
	waitStable(t, o, 3*time.Second, 60*time.Second)
	checked, slowest = checkWithin(t, o, samples, phase4, time.Now(), 2*time.Second)
	t.Logf("phase 4: app deleted; %d summaries checked within 2 s (slowest %s)", checked, slowest.Round(time.Millisecond))
	if _, ok, _ := store.Summary(ctx, cluster, ns, "web"); ok {
		t.Error("the deleted app's summary is still in Redis")
	}

	// The app list API, as users: alice may view the namespace, bob may not.
	env.Grant(t, ns, "alice", "view")
	apiGet := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, fn.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := apiGet("/api/v1/namespaces/"+ns+"/apps", env.Token(t, "alice"))
	var list struct {
		Items []events.AppSummary `json:"items"`
	}
	_ = json.Unmarshal([]byte(body), &list)
	if code != http.StatusOK || len(list.Items) != 1 || list.Items[0].App != "api" || list.Items[0].Run.Pods != 2 {
		t.Errorf("alice lists the apps: %d %s", code, body)
	}
	for _, c := range []struct {
		path, token string
		status      int
	}{
		{"/api/v1/namespaces/" + ns + "/apps/api", env.Token(t, "alice"), 200},
		{"/api/v1/namespaces/" + ns + "/apps/web", env.Token(t, "alice"), 404},
		{"/api/v1/namespaces/" + ns + "/apps", env.Token(t, "bob"), 403},
		{"/api/v1/apps?namespace=" + ns + ",default", env.Token(t, "alice"), 403},
		{"/api/v1/apps?namespace=" + ns, env.Token(t, "alice"), 200},
		{"/api/v1/namespaces/" + ns + "/apps", "", 401},
		{"/api/v1/namespaces/" + ns + "/apps", "not-a-token", 401},
	} {
		if code, body := apiGet(c.path, c.token); code != c.status {
			t.Errorf("GET %s: %d %s, want %d", c.path, code, body, c.status)
		}
	}

	// Bad events: refused with a 4xx and the reason; Redis untouched. (The watcher stops
	// first: its rounds would move the floors meanwhile.)
	w.stop(syscall.SIGTERM)
	before := redistest.Dump(ctx, t, rdb, "")
	recorded := fn.recorded()
	var podEvent recordedEvent
	for _, ev := range recorded {
		if ev.header.Get("Ce-Type") == events.TypePodChanged {
			podEvent = ev
		}
	}
	bad := []struct {
		name   string
		mutate func(ev *recordedEvent)
		reason string
	}{
		{"unknown type", func(ev *recordedEvent) { ev.header.Set("Ce-Type", "io.dwp.pod.teleported.v1") }, "unknown event type"},
		{"malformed data", func(ev *recordedEvent) { ev.body = []byte(`{"namespace":`) }, "data"},
		{"no CloudEvent headers", func(ev *recordedEvent) {
			ev.header = http.Header{"Content-Type": {"application/json"}, "Authorization": ev.header["Authorization"]}
		}, "not a CloudEvent"},
		// Only the watcher may send: no token, a token for another audience and another
		// sender's token are refused before the event is read.
		{"no token (401)", func(ev *recordedEvent) { ev.header.Del("Authorization") }, "Authorization: Bearer"},
		{"token for another audience (401)", func(ev *recordedEvent) {
			file, _ := env.SenderToken(t, "default", "dwp-watcher", "https://kubernetes.default.svc")
			ev.header.Set("Authorization", "Bearer "+readFile(t, file))
		}, "not accepted"},
		{"sender not allowed (403)", func(ev *recordedEvent) {
			file, _ := env.SenderToken(t, ns, "intruder", testAudience)
			ev.header.Set("Authorization", "Bearer "+readFile(t, file))
		}, "may not send"},
		{"invalid state", func(ev *recordedEvent) {
			var m map[string]any
			_ = json.Unmarshal(ev.body, &m)
			m["restarts"] = -1
			ev.body, _ = json.Marshal(m)
		}, "restarts"},
	}
	for _, b := range bad {
		ev := recordedEvent{header: podEvent.header.Clone(), body: slices.Clone(podEvent.body)}
		b.mutate(&ev)
		req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(string(ev.body)))
		req.Header = ev.header
		rec := httptest.NewRecorder()
		fn.fn.Handle(rec, req)
		if rec.Code < 400 || rec.Code >= 500 || !strings.Contains(rec.Body.String(), b.reason) {
			t.Errorf("%s: %d %q, want a 4xx mentioning %q", b.name, rec.Code, rec.Body, b.reason)
		}
	}
	if after := redistest.Dump(ctx, t, rdb, ""); !equalMaps(before, after) {
		t.Errorf("bad events changed Redis:\n before %s\n after %s", render(before), render(after))
	}

	// The recorded events, delivered in order to one function and shuffled and tripled to
	// another, leave the same keyspace, with the live function's summaries.
	recorded = fn.recorded()
	inOrder := startFunction(t, map[string]string{"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": redisSrv.Addr, "DWP_REDIS_DB": "1", "DWP_CLUSTER_NAME": cluster})
	shuffled := startFunction(t, map[string]string{"DWP_KUBECONFIG": env.Kubeconfig, "DWP_REDIS_ADDR": redisSrv.Addr, "DWP_REDIS_DB": "2", "DWP_CLUSTER_NAME": cluster})
	for _, ev := range recorded {
		if code := deliver(t, http.HandlerFunc(inOrder.fn.Handle), ev); code/100 != 2 {
			t.Fatalf("in-order replay: %d", code)
		}
	}
	tripled := slices.Concat(recorded, recorded, recorded)
	rand.Shuffle(len(tripled), func(i, j int) { tripled[i], tripled[j] = tripled[j], tripled[i] })
	for _, ev := range tripled {
		if code := deliver(t, http.HandlerFunc(shuffled.fn.Handle), ev); code/100 != 2 {
			t.Fatalf("shuffled replay: %d", code)
		}
	}
	a, b := withoutStamps(redistest.Dump(ctx, t, redisSrv.Client(t, 1), "")), withoutStamps(redistest.Dump(ctx, t, redisSrv.Client(t, 2), ""))
	if len(a) == 0 || !equalMaps(a, b) {
		t.Errorf("keyspaces differ:\n in order %s\n shuffled %s", render(a), render(b))
	}
	live, _ := store.Summaries(ctx, cluster, ns)
	replayed, _ := summarystore.New(redisSrv.Client(t, 2), "dwp:").Summaries(ctx, cluster, ns)
	byApp := func(l []events.AppSummary) []events.AppSummary {
		slices.SortFunc(l, func(a, b events.AppSummary) int { return strings.Compare(a.App, b.App) })
		return l
	}
	lj, _ := json.Marshal(byApp(live[ns]))
	rj, _ := json.Marshal(byApp(replayed[ns]))
	if len(live[ns]) == 0 || string(lj) != string(rj) {
		t.Errorf("replayed summaries differ from the live ones:\n live     %s\n replayed %s", lj, rj)
	}
	t.Logf("replay: %d recorded events (%d keys) in order, and %d shuffled: same keyspace", len(recorded), len(a), len(tripled))
}
