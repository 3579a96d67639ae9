package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dwp-sre/dwp-sre/sandbox/browsertest"
	"github.com/dwp-sre/dwp-sre/sandbox/clustertest"
	"github.com/dwp-sre/dwp-sre/sandbox/stacktest"
	"github.com/dwp-sre/dwp-sre/sse-router/console/consoletest"
)

func TestMain(m *testing.M) { clustertest.Main(m) }

var workflowTemplates = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "workflowtemplates"}

// TestConsole drives the console as the portal's users would: alice signs in, sees her
// app's live badges, starts a CI run from the catalogue's form and watches its badge go
// Running → Succeeded while another tab follows its live log; follows a pod's log (a new
// line appears; pause holds lines back; search marks them); sees the metrics chart open
// with the last hour from Prometheus and then move; deploys an image with the CD Task
// Runner and sees its Application go Synced and Healthy; the router is killed and
// started again, and the console resumes without a reload. bob, without rights on the
// namespace, sees "not allowed" and none of its data.
func TestConsole(t *testing.T) {
	env := clustertest.Get(t)
	if env.PrometheusURL == "" {
		t.Fatal("the plane runs no Prometheus (make services installs it): the metrics chart's last hour needs it")
	}
	ns := env.Namespace(t)
	env.Grant(t, ns, "alice", "edit")
	ctx := context.Background()
	cs := env.AdminClientset(t)

	// The app: two pods with usage for kwok's metrics, and the CI Task Runner.
	replicas := int32(2)
	labels := map[string]string{"app": "web"}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"kwok.x-k8s.io/usage-cpu": "120m", "kwok.x-k8s.io/usage-memory": "96Mi",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ci := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
		"metadata": map[string]any{"name": "ci", "annotations": map[string]any{"workflows.argoproj.io/title": "CI: build and push"}},
		"spec": map[string]any{
			"entrypoint": "main",
			"arguments":  map[string]any{"parameters": []any{map[string]any{"name": "revision", "value": "main", "description": "The git revision to build."}}},
			"templates": []any{
				map[string]any{"name": "main", "steps": []any{
					[]any{map[string]any{"name": "checkout", "template": "step"}},
					[]any{map[string]any{"name": "build", "template": "step"}},
					[]any{map[string]any{"name": "push", "template": "step"}},
				}},
				map[string]any{"name": "step", "container": map[string]any{"image": "busybox", "command": []any{"sh", "-c"}, "args": []any{"sleep 3"}}},
			},
		},
	}}
	if _, err := env.AdminDynamic(t).Resource(workflowTemplates).Namespace(ns).Create(ctx, ci, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod string
	for deadline := time.Now().Add(60 * time.Second); pod == ""; time.Sleep(200 * time.Millisecond) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				pod = p.Name
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no pod of web is running")
		}
	}
	podLog := env.PodLog(t, ns, pod, "web")
	if _, err := podLog.Append("GET / 200 1.2ms (written before the console opened)"); err != nil {
		t.Fatal(err)
	}

	st := stacktest.Start(t, env, stacktest.Options{
		Namespaces: []string{ns},
		Router:     []string{"DWP_METRICS_INTERVAL=2s"},
	})
	console := st.RouterURL + "/console/"
	shots := t.ArtifactDir()
	browser := browsertest.New(t, chromedp.WindowSize(1400, 1100))
	// Started first, so that each tab below is a tab of this one browser.
	if err := chromedp.Do(browser); err != nil {
		t.Fatal(err)
	}
	newTab := func(name string, opts ...chromedp.ContextOption) (*consoletest.Tab, *browsertest.Problems) {
		tctx, cancel := chromedp.NewContext(browser, opts...)
		t.Cleanup(cancel)
		problems := browsertest.Watch(t, tctx)
		return consoletest.NewTab(t, tctx, name, shots), problems
	}

	// Tab A: the app list.
	a, aProblems := newTab("apps")
	a.Open(console)
	a.WaitFor("the sign-in form", `!!document.querySelector("#token")`, 15*time.Second)
	a.Shot("sign-in")
	a.SignIn(console, env.Token(t, "alice"))
	a.GoTo("#/ns/" + ns)
	row := `document.querySelector('#apps-body tr[data-app="web"]')`
	a.WaitFor("web's row with its pods running", row+`?.querySelector('td.run .badge')?.dataset.status === "Running"`, 60*time.Second)
	// Every status the CI/CD badge shows, in order, as the page draws it.
	a.Eval(`window.cicdSeen = []; setInterval(() => {
		const b = document.querySelector('#apps-body tr[data-app="web"] td.cicd .badge');
		const s = b ? b.dataset.status : "none";
		if (window.cicdSeen[window.cicdSeen.length - 1] !== s) window.cicdSeen.push(s);
	}, 50); ""`)
	a.Shot("app-list")

	// Start the CI run from the catalogue's form.
	a.Eval(row + `.querySelector("td.actions button").click(); ""`)
	a.WaitFor("the catalogue's form", `!!document.querySelector("#start-form #param-revision")`, 15*time.Second)
	a.Eval(`{ const s = document.querySelector("#runner"); s.value = "WorkflowTemplate/ci"; s.dispatchEvent(new Event("change")); } ""`)
	a.WaitFor("the CI form", `document.querySelector("#param-revision")?.value === "main"`, 5*time.Second)
	a.Eval(`document.querySelector("#param-revision").value = "v1.2.3"; ""`)
	a.Shot("start-form")
	a.Eval(`document.querySelector("#start-form button[type=submit]").click(); ""`)
	a.WaitFor("the run started", `!!document.querySelector("#started-run")`, 15*time.Second)
	run := a.Eval(`document.querySelector("#started-run").textContent`)
	t.Logf("started %s", run)

	// Tab B follows the run live while tab A watches the badge.
	b, bProblems := newTab("app")
	b.SignIn(console, env.Token(t, "alice"))
	b.GoTo(fmt.Sprintf("#/ns/%s/app/web/run/%s", ns, run))
	b.WaitFor("the run's steps", `document.querySelectorAll("#steps li[data-step]").length >= 1`, 60*time.Second)
	b.WaitFor("live log lines", `document.querySelectorAll("#run-log .line").length >= 1`, 60*time.Second)
	b.Shot("run-live")

	a.WaitFor("the CI badge Running", `window.cicdSeen.includes("Running")`, 60*time.Second)
	a.Shot("ci-running")
	a.WaitFor("the CI badge Succeeded", `window.cicdSeen.includes("Succeeded")`, 120*time.Second)
	seen := a.Eval(`JSON.stringify(window.cicdSeen)`)
	if i, j := strings.Index(seen, `"Running"`), strings.LastIndex(seen, `"Succeeded"`); i < 0 || j < i {
		t.Errorf("the CI badge showed %s: want Running, then Succeeded", seen)
	}
	t.Logf("CI/CD badge: %s", seen)
	a.Shot("ci-succeeded")
	b.WaitFor("the run's log ended", `!!document.querySelector("#run-log-end")`, 60*time.Second)
	if got := b.Eval(`document.querySelector("#run-log").textContent`); !strings.Contains(got, ".build: container main") || !strings.Contains(got, "Succeeded") {
		t.Errorf("the run's log lacks its steps or its end:\n%s", got)
	}
	b.Shot("run-ended")

	// A pod's log: the line written before, then a new one; pause, search, resume.
	b.GoTo(fmt.Sprintf("#/ns/%s/app/web/pod/%s", ns, pod))
	logLines := `document.querySelector("#pod-log-lines").textContent`
	b.WaitFor("the pod's earlier line", logLines+`.includes("written before the console opened")`, 30*time.Second)
	marker := fmt.Sprintf("GET /checkout 201 %dms", time.Now().UnixNano()%1000)
	if _, err := podLog.Append(marker); err != nil {
		t.Fatal(err)
	}
	b.WaitFor("the new line", logLines+`.includes(`+consoletest.JS(marker)+`)`, 15*time.Second)
	b.Eval(`document.querySelector("#pod-log-pause").click(); ""`)
	if _, err := podLog.Append("POST /pay 500 (while paused)"); err != nil {
		t.Fatal(err)
	}
	b.WaitFor("the paused line counted", `document.querySelector("#pod-log-count").textContent.includes("1 new while paused")`, 15*time.Second)
	if b.Eval(logLines+`.includes("while paused") ? "shown" : ""`) != "" {
		t.Error("a line written while paused was shown")
	}
	b.Eval(`document.querySelector("#pod-log-pause").click(); { const q = document.querySelector("#pod-log-search"); q.value = "checkout"; q.dispatchEvent(new Event("input")); } ""`)
	b.WaitFor("the search", `document.querySelectorAll("#pod-log-lines mark").length === 1 && !`+logLines+`.includes("while paused")`, 5*time.Second)
	b.Shot("pod-log-search")
	b.Eval(`{ const q = document.querySelector("#pod-log-search"); q.value = ""; q.dispatchEvent(new Event("input")); } ""`)
	b.WaitFor("the paused line after resume", logLines+`.includes("while paused")`, 5*time.Second)

	// The metrics chart: the last hour from Prometheus, then live points. The pods are a
	// minute old: the history the router read when the page first opened may have been
	// empty (it keeps a reading 30 s), so the page is opened again until it has points,
	// as a person would come back to it.
	history := `Number(document.querySelector("#metrics-chart")?.dataset.history || 0) > 0`
	for deadline := time.Now().Add(3 * time.Minute); ; {
		b.GoTo("#/ns/" + ns)
		b.GoTo(fmt.Sprintf("#/ns/%s/app/web", ns))
		if b.Holds(history, 35*time.Second) {
			break
		}
		if time.Now().After(deadline) {
			b.Fail("the chart's last hour: no points from Prometheus")
		}
	}
	live := b.Eval(`document.querySelector("#metrics-chart").dataset.live || "0"`)
	b.WaitFor("the chart moving", `Number(document.querySelector("#metrics-chart").dataset.live || 0) >= `+live+` + 2`, 30*time.Second)
	t.Logf("metrics chart: %s points from the last hour, then live", b.Eval(`document.querySelector("#metrics-chart").dataset.history`))
	b.Shot("metrics")

	// Deploy an image through GitOps: Argo CD syncs it, the badges say so.
	a.Eval(`document.querySelector("#start").click(); ""`)
	a.WaitFor("the catalogue's form", `!!document.querySelector("#runner option[value='ClusterWorkflowTemplate/dwp-cd-app-service']")`, 15*time.Second)
	a.Eval(`{ const s = document.querySelector("#runner"); s.value = "ClusterWorkflowTemplate/dwp-cd-app-service"; s.dispatchEvent(new Event("change")); } ""`)
	a.WaitFor("the CD form", `!!document.querySelector("#param-image")`, 5*time.Second)
	a.Eval(`document.querySelector("#run-app").value = "shop"; document.querySelector("#param-image").value = "registry.example/shop:1.0.0"; document.querySelector("#start-form button[type=submit]").click(); ""`)
	a.WaitFor("the deploy started", `!!document.querySelector("#started-run")`, 15*time.Second)
	shop := `document.querySelector('#apps-body tr[data-app="shop"] td.cd')`
	a.WaitFor("shop Synced and Healthy", `!!(`+shop+`?.querySelector('[data-status="Synced"]') && `+shop+`?.querySelector('[data-status="Healthy"]'))`, 180*time.Second)
	a.Shot("cd-synced")
	b.GoTo(fmt.Sprintf("#/ns/%s/app/shop", ns))
	b.WaitFor("shop's Application", `!!document.querySelector('#application-body [data-status="Synced"]') && !!document.querySelector('#application-body [data-status="Healthy"]')`, 30*time.Second)
	b.Shot("application")

	// The router dies and comes back: the tab resumes without a reload.
	b.GoTo(fmt.Sprintf("#/ns/%s/app/web/pod/%s", ns, pod))
	b.WaitFor("the pod's log again", logLines+`.includes(`+consoletest.JS(marker)+`)`, 30*time.Second)
	b.WatchConnection()
	st.Restart(t, "sse-router")
	after := "GET /after-restart 200"
	if _, err := podLog.Append(after); err != nil {
		t.Fatal(err)
	}
	b.WaitFor("the line written across the restart", logLines+`.includes(`+consoletest.JS(after)+`)`, 30*time.Second)
	b.WaitFor("the tab saying it resumed", `window.connStates.includes("resumed")`, 10*time.Second)
	if b.Reloaded() {
		t.Error("the page was reloaded")
	}
	if n := b.Eval(`String(document.querySelectorAll("#pod-log-lines .line").length)`); n == "0" {
		t.Error("the log was lost across the restart")
	}
	b.Shot("resumed")

	// bob may not see the namespace.
	// Another user: a browser context of their own, as another person's browser.
	c, _ := newTab("not-allowed", chromedp.WithNewBrowserContext())
	c.SignIn(console, env.Token(t, "bob"))
	if strings.Contains(c.Eval(`[...document.querySelectorAll("#namespace option")].map(o => o.value).join(" ")`), ns) {
		t.Errorf("bob is offered namespace %s", ns)
	}
	c.GoTo("#/ns/" + ns)
	c.WaitFor("not allowed", `!!document.querySelector("#apps-status .notice.denied")?.textContent.includes("Not allowed")`, 20*time.Second)
	if n := c.Eval(`String(document.querySelectorAll("#apps-body tr[data-app]").length)`); n != "0" {
		t.Errorf("bob sees %s apps of %s", n, ns)
	}
	c.Shot("not-allowed")

	for _, p := range append(aProblems.List(), bProblems.List()...) {
		t.Errorf("the page reported: %s", p)
	}
}
